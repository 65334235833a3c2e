"""Session generations: the claim, the decision, and the service's session helpers and their errors."""

from __future__ import annotations

import datetime as dt
from typing import Any, Optional

import pytest
from authx import SessionInfo
from authx.exceptions import AuthXException, JWTDecodeError, RevokedTokenError

import authx_epoch
from authx_epoch import (
    ConfigurationError,
    EpochRevocation,
    InvalidArgumentError,
    MemoryStore,
    Reason,
    RefreshTokenReusedError,
    SessionRecord,
    SessionTokens,
)
from authx_epoch.claims import ClaimNames, StampState, claims_from_mapping, stamp_claims
from authx_epoch.decision import Policy, decide
from authx_epoch.records import CheckState, EpochRecord, Stamps
from tests.conftest import FakeClock
from tests.helpers import claims_of, forge, make_auth

NAMES = ClaimNames()
T0 = 1_700_000_000.0
USER = EpochRecord(epoch=7, created_at=T0)
GLOBAL = EpochRecord(epoch=3, created_at=T0)


def _claims(**extra: Any) -> Any:
    payload = {"sub": "alice", "jti": "j", "iat": T0, "exp": T0 + 900, "uep": 7, "gep": 3}
    payload.update(extra)
    return claims_from_mapping(payload, NAMES)


def _session(generation: int = 100, first: int = 50, revoked: bool = False) -> SessionRecord:
    return SessionRecord(
        generation=generation, first_generation=first, created_at=T0, expires_at=T0 + 900, revoked=revoked
    )


def _decide(claims: Any, session: Optional[SessionRecord]) -> Reason:
    state = CheckState(USER, GLOBAL, False, session is not None and session.revoked, session)
    return decide(claims, state, T0 + 1, Policy()).reason


# -- the claim ----------------------------------------------------------------------------------


def test_the_generation_is_read_next_to_its_session_id() -> None:
    claims = _claims(session_id="s1", sgen=100)
    assert (claims.stamp, claims.session_generation, claims.session_id) == (StampState.STAMPED, 100, "s1")
    assert _claims(session_id="s1").session_generation is None


@pytest.mark.parametrize(
    "extra",
    [
        {"sgen": 100},  # a generation without the session it belongs to
        {"session_id": "s1", "sgen": "100"},
        {"session_id": "s1", "sgen": True},
        {"session_id": "s1", "sgen": -1},
        {"session_id": "s1", "sgen": 1.5},
        {"session_id": "s1", "sgen": None},
    ],
)
def test_a_malformed_generation_is_a_malformed_stamp(extra: dict[str, Any]) -> None:
    claims = _claims(**extra)
    assert claims.stamp is StampState.MALFORMED
    assert _decide(claims, _session()) is Reason.MALFORMED_STAMP


def test_a_generation_without_epochs_is_malformed() -> None:
    claims = claims_from_mapping({"sub": "alice", "session_id": "s1", "sgen": 1, "exp": T0 + 9}, NAMES)
    assert claims is not None
    assert claims.stamp is StampState.MALFORMED


def test_stamping_writes_the_generation_and_drops_one_the_caller_made_up() -> None:
    stamped = stamp_claims({"session_id": "s1", "sgen": 1}, Stamps(7, 3, 100), NAMES)
    assert stamped["sgen"] == 100
    unstamped = stamp_claims({"session_id": "s1", "sgen": 1}, Stamps(7, 3), NAMES)
    assert "sgen" not in unstamped


def test_the_claim_name_is_configurable_and_checked() -> None:
    assert ClaimNames(session_generation="sg").session_generation == "sg"
    with pytest.raises(ConfigurationError):
        ClaimNames(session_generation="uep")
    with pytest.raises(ConfigurationError):
        ClaimNames(session_generation="jti")


# -- the decision -------------------------------------------------------------------------------


def test_a_session_token_needs_its_record() -> None:
    claims = _claims(session_id="s1", sgen=100)
    assert _decide(claims, _session()) is Reason.ACCEPTED
    assert _decide(claims, None) is Reason.LOST_STATE
    assert _decide(claims, _session(revoked=True)) is Reason.SESSION_REVOKED


def test_older_generations_stay_valid_but_not_older_than_the_record() -> None:
    assert _decide(_claims(session_id="s1", sgen=60), _session(generation=100, first=50)) is Reason.ACCEPTED
    # Older than the record itself: minted for a record that was lost and recreated since.
    assert _decide(_claims(session_id="s1", sgen=49), _session(generation=100, first=50)) is Reason.LOST_STATE


def test_a_session_token_without_generation_uses_the_revoked_flag_only() -> None:
    claims = _claims(session_id="s1")
    assert _decide(claims, None) is Reason.ACCEPTED
    assert _decide(claims, _session(revoked=True)) is Reason.SESSION_REVOKED


# -- the service --------------------------------------------------------------------------------


def _installed(clock: FakeClock, **options: Any) -> tuple[Any, EpochRevocation]:
    auth = make_auth()
    return auth, authx_epoch.install(auth, store="memory://", clock=clock, **options)


@pytest.mark.anyio
async def test_without_authx_the_session_helpers_say_how_to_get_it() -> None:
    rev = EpochRevocation(MemoryStore())
    with pytest.raises(ConfigurationError, match="install"):
        await rev.create_token_pair("alice")
    with pytest.raises(ConfigurationError, match="install"):
        await rev.rotate_refresh_token("a.b.c")
    with pytest.raises(ConfigurationError):
        rev.sync.rotate_refresh_token("a.b.c")


@pytest.mark.anyio
async def test_a_service_built_with_auth_but_not_installed_mints_stamped_pairs() -> None:
    auth = make_auth()
    rev = EpochRevocation(MemoryStore(), auth=auth)
    pair = await rev.create_token_pair("alice")
    assert claims_of(pair.access_token)["sgen"] == claims_of(pair.refresh_token)["sgen"]
    assert (await rev.check(pair.access_token)).accepted
    assert isinstance(await rev.rotate_refresh_token(pair.refresh_token), SessionTokens)


@pytest.mark.anyio
async def test_rotating_what_is_not_a_rotating_refresh_token_is_authx_error(clock: FakeClock) -> None:
    auth, rev = _installed(clock)
    pair = await rev.create_token_pair("alice")
    with pytest.raises(AuthXException) as wrong_type:
        await rev.rotate_refresh_token(pair.access_token)
    assert not isinstance(wrong_type.value, RevokedTokenError)
    with pytest.raises(JWTDecodeError):
        await rev.rotate_refresh_token("not.a.jwt")
    with pytest.raises(JWTDecodeError):
        await rev.rotate_refresh_token(forge("alice", key="another-secret-key-0123456789abcdef", type="refresh"))
    plain = auth.create_refresh_token(uid="alice")  # minted without a session: nothing to rotate
    with pytest.raises(RevokedTokenError, match="create_token_pair"):
        await rev.rotate_refresh_token(plain)
    with pytest.raises(InvalidArgumentError):
        await rev.rotate_refresh_token(None)  # type: ignore[arg-type]
    assert (await rev.stats()).sessions == 1


@pytest.mark.anyio
async def test_a_refresh_token_revoked_by_its_jti_cannot_be_rotated(clock: FakeClock) -> None:
    _, rev = _installed(clock)
    pair = await rev.create_token_pair("alice")
    await rev.revoke_token(pair.refresh_token)
    with pytest.raises(RevokedTokenError) as caught:
        await rev.rotate_refresh_token(pair.refresh_token)
    assert not isinstance(caught.value, RefreshTokenReusedError)
    record = await rev.get_session_record(pair.session_id)
    assert record is not None
    assert not record.revoked


@pytest.mark.anyio
async def test_bad_pair_arguments_change_nothing(clock: FakeClock) -> None:
    _, rev = _installed(clock)
    for bad in ({"uid": 5}, {"uid": "alice", "data": ["x"]}, {"uid": "alice", "scopes": "read"}):
        with pytest.raises(InvalidArgumentError):
            await rev.create_token_pair(**bad)
    assert (await rev.stats()).sessions == 0


def test_a_negative_grace_is_refused() -> None:
    with pytest.raises(InvalidArgumentError, match="refresh_reuse_grace"):
        _installed(FakeClock(), refresh_reuse_grace=dt.timedelta(seconds=-1))


@pytest.mark.anyio
async def test_with_no_grace_a_second_use_is_a_reuse_at_once(clock: FakeClock) -> None:
    _, rev = _installed(clock, refresh_reuse_grace=dt.timedelta(0))
    pair = await rev.create_token_pair("alice")
    await rev.rotate_refresh_token(pair.refresh_token)
    clock.advance(0.001)
    with pytest.raises(RefreshTokenReusedError):
        await rev.rotate_refresh_token(pair.refresh_token)


def test_the_sync_twin_rotates_and_catches_replays(clock: FakeClock) -> None:
    _, rev = _installed(clock)
    pair = rev.sync.create_token_pair("alice", data={"tenant": "acme"}, scopes=["read"])
    assert claims_of(pair.access_token)["scopes"] == ["read"]
    nxt = rev.sync.rotate_refresh_token(pair.refresh_token)
    assert claims_of(nxt.access_token)["tenant"] == "acme"
    assert claims_of(nxt.access_token)["scopes"] == ["read"]
    assert rev.sync.check(nxt.access_token).accepted
    clock.advance(10)
    with pytest.raises(RefreshTokenReusedError):
        rev.sync.rotate_refresh_token(pair.refresh_token)
    assert rev.sync.check(nxt.access_token).reason is Reason.SESSION_REVOKED
    record = rev.sync.get_session_record(pair.session_id)
    assert record is not None
    assert record.revoked


@pytest.mark.anyio
async def test_the_sync_pair_refuses_to_run_inside_an_event_loop(clock: FakeClock) -> None:
    _, rev = _installed(clock)
    with pytest.raises(ConfigurationError, match=r"await revocation\.create_token_pair"):
        rev.sync.create_token_pair("alice")
    assert (await rev.stats()).sessions == 0


class _Sessions:
    """AuthX's SessionStoreProtocol over a dictionary."""

    def __init__(self) -> None:
        self.items: dict[str, SessionInfo] = {}

    async def create(self, session: SessionInfo) -> None:
        self.items[session.session_id] = session

    async def get(self, session_id: str) -> Optional[SessionInfo]:
        return self.items.get(session_id)

    async def update(self, session_id: str, **changes: Any) -> None:
        self.items[session_id] = self.items[session_id].model_copy(update=changes)

    async def delete(self, session_id: str) -> None:
        self.items.pop(session_id, None)

    async def list_by_user(self, uid: str) -> list[SessionInfo]:
        return [session for session in self.items.values() if session.uid == uid]

    async def delete_all_by_user(self, uid: str) -> None:
        for session in await self.list_by_user(uid):
            del self.items[session.session_id]


@pytest.mark.anyio
async def test_with_an_authx_session_store_the_session_is_listed_and_its_revocation_reaches_the_tokens(
    clock: FakeClock,
) -> None:
    auth, rev = _installed(clock)
    sessions = _Sessions()
    auth.set_session_store(sessions)
    pair = await rev.create_token_pair("alice", device_info={"name": "laptop"})
    listed = await auth.list_sessions("alice")
    assert [session.session_id for session in listed] == [pair.session_id]
    assert listed[0].device_info == {"name": "laptop"}
    await auth.revoke_session(pair.session_id)
    assert await auth.list_sessions("alice") == []
    assert (await rev.check(pair.refresh_token)).reason is Reason.SESSION_REVOKED


@pytest.mark.anyio
async def test_tokens_minted_by_the_app_for_a_session_are_stamped_with_its_generation(clock: FakeClock) -> None:
    auth, rev = _installed(clock)
    pair = await rev.create_token_pair("alice")
    extra = auth.create_access_token(uid="alice", data={"session_id": pair.session_id})
    assert claims_of(extra)["sgen"] == claims_of(pair.access_token)["sgen"]
    nxt = await rev.rotate_refresh_token(pair.refresh_token)
    later = auth.create_access_token(uid="alice", data={"session_id": pair.session_id})
    assert claims_of(later)["sgen"] == claims_of(nxt.access_token)["sgen"] > claims_of(extra)["sgen"]
    await rev.revoke_session(pair.session_id)
    for token in (extra, later, nxt.refresh_token):
        assert (await rev.check(token)).reason is Reason.SESSION_REVOKED


class _IssueFailsOnDemand(MemoryStore):
    """A memory store whose mint-time read can be made to fail, like a store going down mid-refresh."""

    failing = False

    def issue(self, uid: str, now: float, expires_at: float, session_id: Optional[str] = None) -> Stamps:
        if self.failing:
            raise authx_epoch.StoreUnavailableError("store down (planted)")
        return super().issue(uid, now, expires_at, session_id)


@pytest.mark.anyio
@pytest.mark.parametrize("twin", ["async", "sync"])
async def test_an_outage_during_a_refresh_moves_nothing_so_a_late_retry_is_no_replay(
    clock: FakeClock, twin: str
) -> None:
    store = _IssueFailsOnDemand()
    auth = make_auth()
    rev = authx_epoch.install(auth, store=store, clock=clock)
    pair = await rev.create_token_pair("alice")
    before = await rev.get_session_record(pair.session_id)
    assert before is not None

    async def refresh() -> SessionTokens:
        if twin == "async":
            return await rev.rotate_refresh_token(pair.refresh_token)
        return rev.sync.rotate_refresh_token(pair.refresh_token)

    store.failing = True
    with pytest.raises(authx_epoch.StoreUnavailableError):
        await refresh()
    after = await rev.get_session_record(pair.session_id)
    assert after is not None
    assert after.generation == before.generation

    # The client retries long after the grace: the store is back, and this is no replay.
    store.failing = False
    clock.advance(3600)
    nxt = await rev.rotate_refresh_token(pair.refresh_token)
    assert (await rev.check(nxt.access_token)).accepted
    assert (await rev.check(nxt.refresh_token)).accepted

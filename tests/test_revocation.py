"""The service on its own (no AuthX app): argument checks, expiry arithmetic, hooks and error mapping.

Built directly as ``EpochRevocation(store)``, without a verifier, so claims are judged as read.
Both twins are exercised; the end-to-end behaviour through AuthX is in ``test_install.py``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Iterator
from typing import Any, Optional

import pytest
from authx import TokenPayload

from authx_epoch import (
    DecisionEvent,
    EpochRevocation,
    InvalidArgumentError,
    InvalidTokenError,
    MemoryStore,
    Reason,
    SqliteStore,
    StoreUnavailableError,
    SyncEpochRevocation,
)
from authx_epoch.records import CheckState
from authx_epoch.stores import Store
from authx_epoch.validation import MAX_ID_LENGTH, MAX_REASON_LENGTH
from tests.conftest import FakeClock
from tests.helpers import aware, forge

LEEWAY = 60.0


@pytest.fixture(params=["memory", "sqlite"])
def backend(request: pytest.FixtureRequest) -> Store:
    store: Store = request.getfixturevalue(f"{request.param}_store")
    return store


@pytest.fixture
def rev(backend: Store, clock: FakeClock) -> EpochRevocation:
    return EpochRevocation(backend, clock=clock)


def stamped(rev: EpochRevocation, uid: str = "alice", **claims: Any) -> str:
    stamps = rev.sync.issue_stamps(uid, rev._checker.clock() + 900)
    return forge(uid, uep=stamps.user_epoch, gep=stamps.global_epoch, **claims)


def test_sync_twin_is_reached_as_sync(rev: EpochRevocation) -> None:
    assert isinstance(rev.sync, SyncEpochRevocation)
    assert rev.sync._checker is rev._checker


# -- bad arguments: a clear error, nothing changed -----------------------------------------


@pytest.mark.parametrize(
    ("method", "args", "kwargs"),
    [
        ("bump_user_epoch", (123,), {}),
        ("bump_user_epoch", (None,), {}),
        ("bump_user_epoch", ("x" * (MAX_ID_LENGTH + 1),), {}),
        ("bump_user_epoch", ("alice",), {"reason": 5}),
        ("bump_user_epoch", ("alice",), {"reason": "r" * (MAX_REASON_LENGTH + 1)}),
        ("bump_global_epoch", (), {"reason": ["x"]}),
        ("bump_global_epoch", (), {"reason": "r" * (MAX_REASON_LENGTH + 1)}),
        ("revoke_session", ("",), {}),
        ("revoke_session", (5,), {}),
        ("revoke_session", ("s" * (MAX_ID_LENGTH + 1),), {}),
        ("revoke_session", ("s",), {"expires_at": dt.datetime(2030, 1, 1)}),  # naive
        ("revoke_session", ("s",), {"expires_at": "tomorrow"}),
        ("revoke_token", (123,), {}),
        ("revoke_token", (None,), {}),
        ("revoke_token", (b"a.b.c",), {}),
        ("issue_stamps", (7, 0.0), {}),
        ("get_user_record", (None,), {}),
    ],
)
@pytest.mark.parametrize("twin", ["async", "sync"])
def test_bad_arguments_raise_and_change_nothing(
    rev: EpochRevocation, twin: str, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    def call() -> object:
        if twin == "sync":
            return getattr(rev.sync, method)(*args, **kwargs)
        return asyncio.run(getattr(rev, method)(*args, **kwargs))

    with pytest.raises(InvalidArgumentError):
        call()
    stats = rev.sync.stats()
    assert (stats.users, stats.revoked_tokens, stats.revoked_sessions) == (0, 0, 0)
    assert rev.sync.get_global_record() is None or rev.sync.get_global_record().bumped_at is None  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"revocation_leeway": 60},
        {"revocation_leeway": dt.timedelta(seconds=-1)},
        {"max_token_lifetime": dt.timedelta(days=-1)},
        {"session_lifetime": "1 day"},
        {"accept_unstamped_until": dt.datetime(2030, 1, 1)},
        {"accept_unstamped_until": "2030-01-01"},
    ],
)
def test_bad_settings_are_refused(backend: Store, kwargs: dict[str, Any]) -> None:
    with pytest.raises(InvalidArgumentError):
        EpochRevocation(backend, **kwargs)


@pytest.mark.parametrize(
    ("token", "message"),
    [
        (forge("alice", drop=("jti",)), "no jti"),
        (forge("alice", jti=""), "no jti"),
        (forge(None), "sub"),
        (forge(42), "sub"),
        ("garbage", "does not decode"),
    ],
)
def test_revoke_token_refuses_tokens_it_cannot_revoke(rev: EpochRevocation, token: str, message: str) -> None:
    with pytest.raises(InvalidTokenError, match=message):
        rev.sync.revoke_token(token)
    assert rev.sync.stats().revoked_tokens == 0


@pytest.mark.parametrize(
    ("claims", "message"), [({"jti": "j" * (MAX_ID_LENGTH + 1)}, "jti"), ({"sub": "u" * (MAX_ID_LENGTH + 1)}, "sub")]
)
def test_revoke_token_refuses_a_payload_with_an_overlong_id(
    rev: EpochRevocation, clock: FakeClock, claims: dict[str, str], message: str
) -> None:
    # A raw token that long is already refused by the token size bound; a payload has none.
    payload = TokenPayload(**{"sub": "alice", "jti": "j1", "iat": clock.now, "exp": clock.now + 60, **claims})
    with pytest.raises(
        InvalidTokenError, match=f"{message} is longer than {MAX_ID_LENGTH} characters; nothing was revoked"
    ):
        rev.sync.revoke_token(payload)
    assert rev.sync.stats().revoked_tokens == 0
    payload = TokenPayload(sub="u" * MAX_ID_LENGTH, jti="j" * MAX_ID_LENGTH, iat=clock.now, exp=clock.now + 60)
    assert rev.sync.revoke_token(payload) is not None
    assert rev.sync.stats().revoked_tokens == 1


def test_max_length_ids_are_accepted(rev: EpochRevocation) -> None:
    uid = "u" * MAX_ID_LENGTH
    record = rev.sync.bump_user_epoch(uid, reason="r" * MAX_REASON_LENGTH)
    assert record.reason == "r" * MAX_REASON_LENGTH
    assert rev.sync.get_user_record(uid) == record
    rev.sync.revoke_session("s" * MAX_ID_LENGTH)
    assert rev.sync.stats().revoked_sessions == 1


# -- expiry arithmetic ---------------------------------------------------------------------


def test_revoke_token_returns_when_the_revocation_lapses(rev: EpochRevocation, clock: FakeClock) -> None:
    token = stamped(rev, exp=clock.now + 300)
    assert rev.sync.revoke_token(token) == clock.now + 300 + LEEWAY
    assert asyncio.run(rev.revoke_token(token)) == clock.now + 300 + LEEWAY
    expired = stamped(rev, exp=clock.now - LEEWAY - 1)
    assert rev.sync.revoke_token(expired) is None
    assert asyncio.run(rev.revoke_token(expired)) is None
    assert rev.sync.stats().revoked_tokens == 1


def test_revocation_lives_until_exp_plus_leeway(rev: EpochRevocation, clock: FakeClock) -> None:
    token = stamped(rev, exp=clock.now + 300)
    rev.sync.revoke_token(token)
    clock.now += 300 + LEEWAY - 1
    assert rev.sync.stats().revoked_tokens == 1
    assert rev.sync.check(token).reason is Reason.TOKEN_REVOKED
    clock.now += 2
    assert rev.sync.stats().revoked_tokens == 0


def test_token_without_exp_is_revoked_for_the_maximum_lifetime(backend: Store, clock: FakeClock) -> None:
    rev = EpochRevocation(backend, clock=clock, max_token_lifetime=dt.timedelta(hours=1))
    token = stamped(rev, drop=("exp",), iat=int(clock.now))
    assert rev.sync.check(token).accepted
    rev.sync.revoke_token(token)
    clock.now = int(clock.now) + 3600 + LEEWAY - 1
    assert rev.sync.stats().revoked_tokens == 1
    clock.now += 2
    assert rev.sync.stats().revoked_tokens == 0


def test_token_without_exp_is_refused_after_the_maximum_lifetime(backend: Store, clock: FakeClock) -> None:
    rev = EpochRevocation(backend, clock=clock, max_token_lifetime=dt.timedelta(hours=1))
    token = stamped(rev, drop=("exp",), iat=int(clock.now) - 3601)
    assert rev.sync.check(token).reason is Reason.LIFETIME_EXCEEDED


def test_custom_leeway_is_used(backend: Store, clock: FakeClock) -> None:
    rev = EpochRevocation(backend, clock=clock, revocation_leeway=dt.timedelta(0))
    token = stamped(rev, exp=clock.now + 100)
    rev.sync.revoke_token(token)
    clock.now += 100.5
    assert rev.sync.stats().revoked_tokens == 0


@pytest.mark.parametrize("kind", ["datetime", "float"])
def test_revoke_session_until_a_given_expiry(rev: EpochRevocation, clock: FakeClock, kind: str) -> None:
    until = clock.now + 600
    rev.sync.revoke_session("s1", expires_at=aware(until) if kind == "datetime" else until)
    clock.now = until + LEEWAY - 1
    assert rev.sync.stats().revoked_sessions == 1
    clock.now = until + LEEWAY + 1
    assert rev.sync.stats().revoked_sessions == 0


def test_revoke_session_defaults_to_the_session_lifetime(backend: Store, clock: FakeClock) -> None:
    rev = EpochRevocation(backend, clock=clock, session_lifetime=dt.timedelta(hours=2))
    start = clock.now
    rev.sync.revoke_session("s1")
    clock.now = start + 7200 + LEEWAY - 1
    assert rev.sync.stats().revoked_sessions == 1
    clock.now = start + 7200 + LEEWAY + 1
    assert rev.sync.stats().revoked_sessions == 0


def test_a_bumped_record_outlives_every_token_it_revokes(backend: Store, clock: FakeClock) -> None:
    rev = EpochRevocation(backend, clock=clock, max_token_lifetime=dt.timedelta(hours=1))
    token = stamped(rev, exp=clock.now + 3600)
    clock.advance(1)
    rev.sync.bump_user_epoch("alice")
    clock.advance(3600)
    record = rev.sync.get_user_record("alice")
    assert record is not None
    assert record.bumped_at is not None
    assert rev.sync.check(token).reason is Reason.USER_EPOCH


# -- hooks and logging ---------------------------------------------------------------------


def test_on_decision_hook_sees_every_check(backend: Store, clock: FakeClock) -> None:
    events: list[DecisionEvent] = []
    rev = EpochRevocation(backend, clock=clock, on_decision=events.append)
    token = stamped(rev, jti="the-jti", session_id="sess")
    assert rev.sync.check(token).accepted
    rev.sync.revoke_token(token)
    asyncio.run(rev.check(token))
    rev.sync.check("garbage")
    assert [e.decision.reason for e in events] == [Reason.ACCEPTED, Reason.TOKEN_REVOKED, Reason.NOT_OURS]
    assert (events[0].uid, events[0].jti, events[0].session_id) == ("alice", "the-jti", "sess")
    assert events[2].uid is None
    assert all(e.duration >= 0 for e in events)


def test_a_failing_hook_is_logged_and_the_decision_stands(
    backend: Store, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(event: DecisionEvent) -> None:
        raise RuntimeError("hook bug")

    rev = EpochRevocation(backend, clock=clock, on_decision=broken)
    token = stamped(rev)
    with caplog.at_level(logging.ERROR, logger="authx_epoch"):
        assert rev.sync.check(token).accepted
        rev.sync.bump_user_epoch("alice")
        assert rev.sync.is_token_revoked(token)
    assert "on_decision" in caplog.text


def test_rejections_are_logged_without_the_token(rev: EpochRevocation, caplog: pytest.LogCaptureFixture) -> None:
    token = stamped(rev)
    rev.sync.bump_user_epoch("alice", reason="password_change")
    with caplog.at_level(logging.INFO, logger="authx_epoch"):
        assert not rev.sync.check(token).accepted
    assert "user_epoch" in caplog.text
    for part in token.split("."):
        assert part not in caplog.text


# -- errors never become 500s --------------------------------------------------------------


class BuggyStore(MemoryStore):
    """A real memory store with a bug planted in its read path."""

    def fetch(self, uid: str, jti: Optional[str], session_id: Optional[str], now: float) -> CheckState:
        raise KeyError("a bug in a backend")


def test_an_unexpected_error_becomes_store_unavailable(clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    rev = EpochRevocation(BuggyStore(), clock=clock)
    token = stamped(rev)
    with caplog.at_level(logging.ERROR, logger="authx_epoch"):
        with pytest.raises(StoreUnavailableError):
            rev.sync.is_token_revoked(token)
        with pytest.raises(StoreUnavailableError):
            asyncio.run(rev.is_token_revoked(token))
    assert "unexpectedly" in caplog.text


@pytest.fixture
def broken_sqlite(tmp_path: Any, clock: FakeClock) -> Iterator[tuple[EpochRevocation, Any]]:
    path = tmp_path / "r.db"
    store = SqliteStore(path)
    yield EpochRevocation(store, clock=clock), path
    store.close()


def test_store_trouble_is_store_unavailable_on_every_operation(
    broken_sqlite: tuple[EpochRevocation, Any], clock: FakeClock
) -> None:
    rev, path = broken_sqlite
    token = stamped(rev)
    for suffix in ("", "-wal", "-shm"):
        side = path.with_name(path.name + suffix)
        if side.exists():
            side.unlink()
    path.write_bytes(b"garbage, not a database " * 64)
    with pytest.raises(StoreUnavailableError):
        rev.sync.check(token)
    with pytest.raises(StoreUnavailableError):
        rev.sync.bump_user_epoch("alice")
    with pytest.raises(StoreUnavailableError):
        rev.sync.bump_global_epoch()
    with pytest.raises(StoreUnavailableError):
        rev.sync.revoke_token(token)
    with pytest.raises(StoreUnavailableError):
        rev.sync.revoke_session("s")
    with pytest.raises(StoreUnavailableError):
        rev.sync.issue_stamps("alice", clock.now + 900)
    with pytest.raises(StoreUnavailableError):
        asyncio.run(rev.bump_user_epoch("alice"))
    # a token that does not decode is still not ours, store or no store
    assert rev.sync.check("garbage").reason is Reason.NOT_OURS


def test_fail_open_lets_the_check_pass_and_says_so(
    broken_sqlite: tuple[EpochRevocation, Any], clock: FakeClock
) -> None:
    rev, path = broken_sqlite
    open_rev = EpochRevocation(rev.store, clock=clock, fail_open=True)
    token = stamped(open_rev)
    path.unlink()
    path.mkdir()
    decision = open_rev.sync.check(token)
    assert decision.accepted
    assert decision.reason is Reason.FAIL_OPEN
    assert asyncio.run(open_rev.check(token)).reason is Reason.FAIL_OPEN
    path.rmdir()

"""install() and the service through real AuthX in real FastAPI apps, on the memory and SQLite stores.

Requests go through httpx's ASGI transport (WebSockets through Starlette's TestClient); time moves
with the injectable FakeClock. A twin app without authx-epoch shows what AuthX alone answers.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import shutil
import time
import warnings
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from authx import AuthX, TokenPayload
from authx._internal._session import InMemorySessionStore
from fastapi import Depends, FastAPI
from starlette.exceptions import StarletteDeprecationWarning
from starlette.websockets import WebSocketDisconnect

import authx_epoch
from authx_epoch import ClaimNames, ConfigurationError, EpochRevocation, InvalidTokenError, Reason
from authx_epoch.integrations.authx import STORE_UNAVAILABLE_MESSAGE
from tests.conftest import FakeClock
from tests.helpers import Harness, add_routes, aware, bearer, build_app, claims_of, client, forge, make_auth, raw_token

with warnings.catch_warnings():
    # Starlette now prefers the httpx2 package for its TestClient; httpx works the same for a WebSocket.
    warnings.filterwarnings(
        "ignore",
        message="Using `httpx` with `starlette.testclient` is deprecated",
        category=StarletteDeprecationWarning,
    )
    from starlette.testclient import TestClient

pytestmark = pytest.mark.anyio


def revoked_body(auth: AuthX[Any]) -> dict[str, str]:
    return {"message": auth.MSG_RevokedTokenError, "error_type": "RevokedTokenError"}


@pytest.fixture(params=["memory", "sqlite"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return "memory://" if request.param == "memory" else f"sqlite:///{tmp_path}/revocation.db"


@pytest.fixture
def make(store_url: str, clock: FakeClock) -> Iterator[Callable[..., Harness]]:
    """Builds installed apps on this test's store URL, and closes their stores afterwards."""
    built: list[Harness] = []

    def factory(**kwargs: Any) -> Harness:
        kwargs.setdefault("clock", clock)
        harness = build_app(store_url, **kwargs)
        built.append(harness)
        return harness

    yield factory
    for harness in built:
        harness.rev.store.sync.close()


@pytest.fixture
def h(make: Callable[..., Harness]) -> Harness:
    return make()


async def status(app: FastAPI, token: str, path: str = "/protected") -> int:
    async with client(app) as c:
        method = c.post if path == "/refresh" else c.get
        return (await method(path, headers=bearer(token))).status_code


async def run(twin: str, rev: EpochRevocation, name: str, *args: Any, **kwargs: Any) -> Any:
    """Call one service method on the async service or on its sync twin."""
    if twin == "sync":
        return getattr(rev.sync, name)(*args, **kwargs)
    result: Awaitable[Any] = getattr(rev, name)(*args, **kwargs)
    return await result


twins = pytest.mark.parametrize("twin", ["async", "sync"])


# -- stamping ------------------------------------------------------------------------------


async def test_access_token_is_stamped_with_the_current_epochs(h: Harness) -> None:
    token = h.auth.create_access_token(uid="alice")
    claims = claims_of(token)
    user = await h.rev.get_user_record("alice")
    global_ = await h.rev.get_global_record()
    assert user is not None
    assert global_ is not None
    assert (claims["uep"], claims["gep"]) == (user.epoch, global_.epoch)
    assert await status(h.app, token) == 200


async def test_refresh_token_is_stamped(h: Harness) -> None:
    token = h.auth.create_refresh_token(uid="alice")
    claims = claims_of(token)
    user = await h.rev.get_user_record("alice")
    assert user is not None
    assert claims["uep"] == user.epoch
    assert claims["type"] == "refresh"
    assert await status(h.app, token, "/refresh") == 200


async def test_token_pair_is_stamped(h: Harness) -> None:
    pair = h.auth.create_token_pair(uid="alice", data={"session_id": "s1", "role": "admin"})
    access, refresh = claims_of(pair.access_token), claims_of(pair.refresh_token)
    assert access["uep"] == refresh["uep"]
    assert access["gep"] == refresh["gep"]
    assert access["session_id"] == refresh["session_id"] == "s1"
    assert access["role"] == "admin"
    assert await status(h.app, pair.access_token) == 200
    assert await status(h.app, pair.refresh_token, "/refresh") == 200


async def test_a_caller_cannot_choose_its_own_stamp(h: Harness) -> None:
    token = h.auth.create_access_token(uid="alice", data={"uep": 1, "gep": 1})
    user = await h.rev.get_user_record("alice")
    assert user is not None
    assert claims_of(token)["uep"] == user.epoch != 1
    assert await status(h.app, token) == 200


async def test_custom_claim_names_are_stamped_and_checked(make: Callable[..., Harness]) -> None:
    h = make(claims=ClaimNames(user_epoch="x_u", global_epoch="x_g", session_id="sid"))
    token = h.auth.create_access_token(uid="alice", data={"sid": "s9"})
    claims = claims_of(token)
    assert "uep" not in claims
    assert isinstance(claims["x_u"], int)
    assert await status(h.app, token) == 200
    await h.rev.revoke_session("s9")
    assert await status(h.app, token) == 401


# -- bump ----------------------------------------------------------------------------------


@twins
async def test_bump_rejects_older_tokens_and_new_logins_work(h: Harness, clock: FakeClock, twin: str) -> None:
    old = h.auth.create_access_token(uid="alice")
    old_refresh = h.auth.create_refresh_token(uid="alice")
    bob = h.auth.create_access_token(uid="bob")
    clock.advance(1)
    record = await run(twin, h.rev, "bump_user_epoch", "alice", reason="password_change")
    assert record.reason == "password_change"
    async with client(h.app) as c:
        r = await c.get("/protected", headers=bearer(old))
        assert r.status_code == 401
        assert r.json() == revoked_body(h.auth)
        assert (await c.post("/refresh", headers=bearer(old_refresh))).status_code == 401
        assert (await c.get("/protected", headers=bearer(bob))).status_code == 200
        login = await c.post("/login", params={"uid": "alice"})
        assert login.status_code == 200
        new = login.json()["access_token"]
        assert claims_of(new)["uep"] == record.epoch
        assert (await c.get("/protected", headers=bearer(new))).status_code == 200
    assert (await h.rev.check(old)) == authx_epoch.Decision(False, Reason.USER_EPOCH)


@twins
async def test_bump_within_the_same_clock_tick_still_revokes(h: Harness, twin: str) -> None:
    old = h.auth.create_access_token(uid="alice")
    await run(twin, h.rev, "bump_user_epoch", "alice")
    assert await status(h.app, old) == 401
    assert await status(h.app, h.auth.create_access_token(uid="alice")) == 200


@twins
async def test_global_bump_rejects_every_older_token(h: Harness, clock: FakeClock, twin: str) -> None:
    tokens = [h.auth.create_access_token(uid=u) for u in ("alice", "bob", "carol")]
    refresh = h.auth.create_refresh_token(uid="dave")
    clock.advance(1)
    record = await run(twin, h.rev, "bump_global_epoch", reason="key rotation")
    assert record.reason == "key rotation"
    for token in tokens:
        assert await status(h.app, token) == 401
    assert await status(h.app, refresh, "/refresh") == 401
    fresh = h.auth.create_access_token(uid="alice")
    assert claims_of(fresh)["gep"] == record.epoch
    assert await status(h.app, fresh) == 200


# -- single-token revocation ---------------------------------------------------------------


@twins
async def test_revoke_token_rejects_only_that_token(h: Harness, twin: str) -> None:
    first = h.auth.create_access_token(uid="alice")
    second = h.auth.create_access_token(uid="alice")
    await run(twin, h.rev, "revoke_token", first)
    assert await status(h.app, first) == 401
    assert await status(h.app, second) == 200
    assert await status(h.app, h.auth.create_access_token(uid="alice")) == 200
    assert (await h.rev.check(first)).reason is Reason.TOKEN_REVOKED


async def test_revoke_token_takes_an_authx_token_payload(h: Harness) -> None:
    rev = h.rev

    @h.app.post("/logout")
    async def logout(payload: TokenPayload = Depends(h.auth.access_token_required)) -> dict[str, str]:  # noqa: B008
        await rev.revoke_token(payload)
        return {"ok": "yes"}

    token = h.auth.create_access_token(uid="alice")
    other = h.auth.create_access_token(uid="alice")
    async with client(h.app) as c:
        assert (await c.post("/logout", headers=bearer(token))).status_code == 200
        assert (await c.get("/protected", headers=bearer(token))).status_code == 401
        assert (await c.get("/protected", headers=bearer(other))).status_code == 200


@twins
async def test_revocation_entry_expires_with_the_token(h: Harness, clock: FakeClock, twin: str) -> None:
    token = h.auth.create_access_token(uid="alice", expiry=dt.timedelta(minutes=5))
    await run(twin, h.rev, "revoke_token", token)
    assert (await h.rev.stats()).revoked_tokens == 1
    exp = claims_of(token)["exp"]
    leeway = 60.0
    clock.now = exp + leeway - 1
    assert (await h.rev.stats()).revoked_tokens == 1
    clock.now = exp + leeway + 1
    assert (await h.rev.stats()).revoked_tokens == 0


@twins
async def test_revoking_an_expired_token_stores_nothing(h: Harness, clock: FakeClock, twin: str) -> None:
    token = h.auth.create_access_token(uid="alice", expiry=dt.timedelta(minutes=1))
    clock.advance(3600)
    await run(twin, h.rev, "revoke_token", token)
    assert (await h.rev.stats()).revoked_tokens == 0


@twins
async def test_revoke_token_refuses_what_it_cannot_verify(h: Harness, twin: str) -> None:
    forged = forge("alice", key="not-the-secret-key-0123456789abcdef", uep=1, gep=1)
    for bad in (forged, "garbage", raw_token({"sub": "alice", "jti": "j"})):
        with pytest.raises(InvalidTokenError):
            await run(twin, h.rev, "revoke_token", bad)
    assert (await h.rev.stats()).revoked_tokens == 0


# -- sessions ------------------------------------------------------------------------------


@twins
async def test_revoke_session_rejects_access_and_refresh_of_that_session(h: Harness, twin: str) -> None:
    pair = h.auth.create_token_pair(uid="alice", data={"session_id": "laptop"})
    phone = h.auth.create_token_pair(uid="alice", data={"session_id": "phone"})
    await run(twin, h.rev, "revoke_session", "laptop")
    assert await status(h.app, pair.access_token) == 401
    assert await status(h.app, pair.refresh_token, "/refresh") == 401
    assert await status(h.app, phone.access_token) == 200
    assert await status(h.app, phone.refresh_token, "/refresh") == 200
    assert (await h.rev.check(pair.access_token)).reason is Reason.SESSION_REVOKED


async def test_authx_revoke_session_also_revokes_the_tokens(h: Harness) -> None:
    sessions = InMemorySessionStore()
    h.auth.set_session_store(sessions)
    laptop = await h.auth.create_session("alice")
    phone = await h.auth.create_session("alice")
    on_laptop = h.auth.create_token_pair(uid="alice", data={"session_id": laptop.session_id})
    on_phone = h.auth.create_access_token(uid="alice", data={"session_id": phone.session_id})
    await h.auth.revoke_session(laptop.session_id)
    assert await h.auth.get_session(laptop.session_id) is None
    assert await status(h.app, on_laptop.access_token) == 401
    assert await status(h.app, on_laptop.refresh_token, "/refresh") == 401
    assert await status(h.app, on_phone) == 200


async def test_authx_revoke_all_sessions_revokes_every_token_of_the_user(h: Harness, clock: FakeClock) -> None:
    sessions = InMemorySessionStore()
    h.auth.set_session_store(sessions)
    tokens = []
    for _ in range(3):
        session = await h.auth.create_session("alice")
        tokens.append(h.auth.create_access_token(uid="alice", data={"session_id": session.session_id}))
    bob_session = await h.auth.create_session("bob")
    bob = h.auth.create_access_token(uid="bob", data={"session_id": bob_session.session_id})
    clock.advance(1)
    await h.auth.revoke_all_sessions("alice")
    assert await h.auth.list_sessions("alice") == []
    for token in tokens:
        assert await status(h.app, token) == 401
    assert await status(h.app, bob) == 200
    assert await status(h.app, h.auth.create_access_token(uid="alice")) == 200


# -- unstamped tokens and the migration window ---------------------------------------------


async def test_unstamped_tokens_are_rejected_by_default(h: Harness) -> None:
    plain = make_auth()  # the same secret, without authx-epoch: its tokens carry no stamp
    token = plain.create_access_token(uid="alice")
    assert "uep" not in claims_of(token)
    twin = build_app(None)
    assert await status(twin.app, token) == 200
    assert await status(h.app, token) == 401
    assert (await h.rev.check(token)).reason is Reason.UNSTAMPED


@pytest.fixture
def window_clock() -> FakeClock:
    # The store is set up 100 s before the real time, so tokens AuthX mints now are "after install".
    return FakeClock(time.time() - 100)


@pytest.fixture
def window(store_url: str, window_clock: FakeClock) -> Iterator[Harness]:
    harness = build_app(store_url, clock=window_clock, accept_unstamped_until=aware(window_clock.now + 3600))
    yield harness
    harness.rev.store.sync.close()


def legacy(uid: str, window_clock: FakeClock) -> str:
    """An unstamped token minted before authx-epoch was installed."""
    return forge(uid, iat=int(window_clock.now) - 1000)


async def test_window_accepts_unstamped_tokens_minted_before_install(window: Harness, window_clock: FakeClock) -> None:
    assert await status(window.app, legacy("alice", window_clock)) == 200
    assert await status(window.app, window.auth.create_access_token(uid="alice")) == 200


async def test_window_rejects_an_unstamped_token_minted_after_install(window: Harness) -> None:
    after = make_auth().create_access_token(uid="alice")
    assert await status(window.app, after) == 401
    assert await status(window.app, forge("alice")) == 401


@twins
async def test_a_user_bump_closes_the_window_for_that_users_old_tokens(
    window: Harness, window_clock: FakeClock, twin: str
) -> None:
    alice, bob = legacy("alice", window_clock), legacy("bob", window_clock)
    await run(twin, window.rev, "bump_user_epoch", "alice", reason="logout-all")
    assert await status(window.app, alice) == 401
    assert await status(window.app, bob) == 200


@twins
async def test_a_global_bump_closes_the_window_for_everyone(
    window: Harness, window_clock: FakeClock, twin: str
) -> None:
    alice = legacy("alice", window_clock)
    await run(twin, window.rev, "bump_global_epoch")
    assert await status(window.app, alice) == 401
    assert await status(window.app, window.auth.create_access_token(uid="alice")) == 200


async def test_window_closes_at_the_deadline(window: Harness, window_clock: FakeClock) -> None:
    token = legacy("alice", window_clock)
    window_clock.advance(3599)
    assert await status(window.app, token) == 200
    window_clock.advance(2)
    assert await status(window.app, token) == 401


@pytest.mark.parametrize(
    "stamp",
    [{"uep": "123"}, {"uep": 1.5}, {"uep": True}, {"uep": None}, {"uep": -1}, {"uep": 2**70}, {"gep": "x"}, {}],
    ids=["str", "float", "bool", "null", "negative", "huge", "gep-str", "gep-missing"],
)
async def test_malformed_stamps_are_rejected_even_inside_the_window(
    window: Harness, window_clock: FakeClock, stamp: dict[str, Any]
) -> None:
    good = window.auth.create_access_token(uid="alice")
    claims = {"uep": claims_of(good)["uep"], "gep": claims_of(good)["gep"] if "gep" not in stamp else stamp["gep"]}
    claims.update({k: v for k, v in stamp.items() if k == "uep"})
    if not stamp:
        claims.pop("gep")
    token = forge("alice", iat=int(window_clock.now) - 1000, **claims)
    assert await status(window.app, token) == 401
    assert (await window.rev.check(token)).reason is Reason.MALFORMED_STAMP


# -- tokens that are not ours: exactly AuthX's answer ---------------------------------------


def not_ours() -> list[tuple[str, str]]:
    wrong_key = "a-completely-different-key-0123456789abcdef"
    return [
        ("garbage", "garbage"),
        ("two-dots", "a.b.c"),
        ("unsigned-json", raw_token({"sub": "alice", "uep": 1, "gep": 1})),
        ("array-payload", raw_token([1, 2, 3])),
        ("forged-stale-stamp", forge("alice", key=wrong_key, uep=1, gep=1)),
        ("forged-unstamped", forge("alice", key=wrong_key)),
        ("expired-stale-stamp", forge("alice", exp=time.time() - 3600, iat=int(time.time()) - 7200, uep=1, gep=1)),
        ("numeric-sub", forge(12345, uep=1, gep=1)),
        ("huge-forged", forge("alice", key=wrong_key, uep=1, gep=1, pad="x" * 20_000)),
    ]


@pytest.mark.parametrize(("name", "token"), not_ours(), ids=[n for n, _ in not_ours()])
async def test_tokens_that_are_not_ours_get_exactly_authx_own_answer(h: Harness, name: str, token: str) -> None:
    twin = build_app(None)
    for path in ("/protected", "/scoped", "/refresh"):
        async with client(twin.app) as c:
            method = c.post if path == "/refresh" else c.get
            alone = await method(path, headers=bearer(token))
        async with client(h.app) as c:
            method = c.post if path == "/refresh" else c.get
            ours = await method(path, headers=bearer(token))
        assert alone.status_code < 500
        assert (ours.status_code, ours.json()) == (alone.status_code, alone.json()), path
    assert (await h.rev.check(token)).accepted
    assert h.rev.sync.check(token).accepted
    assert not await h.rev.is_token_revoked(token)


async def test_an_oversized_signed_token_is_still_checked(h: Harness, clock: FakeClock) -> None:
    # too long for the cheap reader: it is verified and read the expensive way, never waved through
    token = h.auth.create_access_token(uid="alice", data={"pad": "x" * 20_000})
    assert len(token) > 16 * 1024
    assert await status(h.app, token) == 200
    clock.advance(1)
    await h.rev.bump_user_epoch("alice")
    assert await status(h.app, token) == 401
    stale = forge("alice", uep=1, gep=1, pad="x" * 20_000)
    assert await status(build_app(None).app, stale) == 200
    assert await status(h.app, stale) == 401


async def test_undecodable_token_is_a_422_jwt_decode_error_as_in_authx(h: Harness) -> None:
    async with client(h.app) as c:
        r = await c.get("/protected", headers=bearer("garbage"))
    assert r.status_code == 422
    assert r.json()["error_type"] == "JWTDecodeError"


async def test_missing_token_gets_authx_own_answer(h: Harness) -> None:
    twin = build_app(None)
    async with client(twin.app) as c:
        alone = await c.get("/protected")
    async with client(h.app) as c:
        ours = await c.get("/protected")
    assert (ours.status_code, ours.json()) == (alone.status_code, alone.json())


@pytest.mark.parametrize("junk", [None, 0, b"a.b.c", "", "x" * 100_000, "\x00.\x00.\x00", ["a"]])
async def test_the_callback_never_raises_on_junk(h: Harness, junk: Any) -> None:
    assert await h.rev.is_token_revoked(junk) is False
    assert h.rev.sync.is_token_revoked(junk) is False
    assert await h.auth.is_token_in_blocklist(junk) is False


# -- the sync twin -------------------------------------------------------------------------


async def test_sync_twin_decides_like_the_async_service(h: Harness, clock: FakeClock) -> None:
    tokens = {
        "ok": h.auth.create_access_token(uid="alice"),
        "revoked": h.auth.create_access_token(uid="bob"),
        "session": h.auth.create_access_token(uid="carol", data={"session_id": "s"}),
        "user": h.auth.create_access_token(uid="dave"),
        "unstamped": make_auth().create_access_token(uid="erin"),
        "garbage": "garbage",
    }
    h.rev.sync.revoke_token(tokens["revoked"])
    h.rev.sync.revoke_session("s")
    clock.advance(1)
    h.rev.sync.bump_user_epoch("dave")
    for name, token in tokens.items():
        assert h.rev.sync.check(token) == await h.rev.check(token), name
        assert h.rev.sync.is_token_revoked(token) == await h.rev.is_token_revoked(token), name
    assert h.rev.sync.check(tokens["ok"]).accepted
    assert h.rev.sync.get_user_record("dave") == await h.rev.get_user_record("dave")
    assert h.rev.sync.stats() == await h.rev.stats()


# -- fail-closed and fail-open -------------------------------------------------------------


@pytest.fixture
def sqlite_path(tmp_path: Path) -> Path:
    return tmp_path / "revocation.db"


@contextmanager
def store_down(path: Path) -> Iterator[None]:
    """Make the SQLite file unusable for real (a directory where the file was), then put it back."""
    aside = path.with_name(path.name + ".aside")
    os.rename(path, aside)
    os.mkdir(path)
    try:
        yield
    finally:
        shutil.rmtree(path)
        os.rename(aside, path)


def sqlite_harness(path: Path, clock: FakeClock, **kwargs: Any) -> Harness:
    return build_app(f"sqlite:///{path}", clock=clock, **kwargs)


UNAVAILABLE = {"message": STORE_UNAVAILABLE_MESSAGE, "error_type": "StoreUnavailableError"}


async def test_fail_closed_answers_503_on_every_path(sqlite_path: Path, clock: FakeClock) -> None:
    h = sqlite_harness(sqlite_path, clock)
    access = h.auth.create_access_token(uid="alice", fresh=True, scopes=["read"])
    refresh = h.auth.create_refresh_token(uid="alice")
    async with client(h.app) as c:
        assert (await c.get("/fresh", headers=bearer(access))).status_code == 200
        with store_down(sqlite_path):
            answers = {
                "access": await c.get("/protected", headers=bearer(access)),
                "refresh": await c.post("/refresh", headers=bearer(refresh)),
                "fresh": await c.get("/fresh", headers=bearer(access)),
                "scopes": await c.get("/scoped", headers=bearer(access)),
                "rate_limited": await c.get("/limited", headers=bearer(access)),
                "login": await c.post("/login", params={"uid": "bob"}),
            }
            for name, r in answers.items():
                assert (r.status_code, r.json()) == (503, UNAVAILABLE), name
            # a token that is not ours still gets AuthX's own answer, not a 503
            assert (await c.get("/protected", headers=bearer("garbage"))).status_code == 422
        # the service resumes on its own once the store is back
        assert (await c.get("/protected", headers=bearer(access))).status_code == 200
        assert (await c.post("/login", params={"uid": "bob"})).status_code == 200
        await h.rev.bump_user_epoch("alice")
        assert (await c.get("/protected", headers=bearer(access))).status_code == 401
    h.rev.store.sync.close()


def test_fail_closed_websocket_closes_with_1013(sqlite_path: Path, clock: FakeClock) -> None:
    h = sqlite_harness(sqlite_path, clock)
    token = h.auth.create_access_token(uid="alice")
    with TestClient(h.app) as tc:
        with tc.websocket_connect(f"/ws?token={token}") as ws:
            assert ws.receive_json() == {"sub": "alice"}
        with store_down(sqlite_path):
            with pytest.raises(WebSocketDisconnect) as closed, tc.websocket_connect(f"/ws?token={token}") as ws:
                ws.receive_json()
            assert closed.value.code == 1013
        with tc.websocket_connect(f"/ws?token={token}") as ws:
            assert ws.receive_json() == {"sub": "alice"}
    h.rev.store.sync.close()


async def test_fail_open_lets_tokens_through_and_logs_without_the_token(
    sqlite_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    h = sqlite_harness(sqlite_path, clock, fail_open=True)
    token = h.auth.create_access_token(uid="alice")
    async with client(h.app) as c:
        with store_down(sqlite_path), caplog.at_level(logging.WARNING, logger="authx_epoch"):
            assert (await c.get("/protected", headers=bearer(token))).status_code == 200
            assert (await c.get("/protected", headers=bearer(token))).status_code == 200
        warnings = [r for r in caplog.records if r.name == "authx_epoch" and r.levelno == logging.WARNING]
        assert len(warnings) >= 2
        assert "fail_open" in warnings[0].getMessage()
        text = caplog.text
        assert token not in text
        assert token.split(".")[1] not in text
        assert token.split(".")[2] not in text
        caplog.clear()
        # back to normal: checked again, and revocations apply
        await h.rev.revoke_token(token)
        assert (await c.get("/protected", headers=bearer(token))).status_code == 401
    h.rev.store.sync.close()


async def test_fail_closed_logs_without_the_token(
    sqlite_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    h = sqlite_harness(sqlite_path, clock)
    token = h.auth.create_access_token(uid="alice")
    async with client(h.app) as c:
        with store_down(sqlite_path), caplog.at_level(logging.INFO, logger="authx_epoch"):
            assert (await c.get("/protected", headers=bearer(token))).status_code == 503
    assert caplog.records
    assert token.split(".")[2] not in caplog.text
    assert token.split(".")[1] not in caplog.text
    h.rev.store.sync.close()


def replace_with_empty_file(path: Path) -> None:
    """Put an empty file where the database was: an empty database, every record lost."""
    os.rename(path, path.with_name("old.db"))
    for suffix in ("-wal", "-shm"):
        side = Path(str(path) + suffix)
        if side.exists():
            side.unlink()
    path.touch()


async def test_a_file_replaced_by_an_empty_database_rejects_stamped_tokens(sqlite_path: Path, clock: FakeClock) -> None:
    h = sqlite_harness(sqlite_path, clock)
    token = h.auth.create_access_token(uid="alice")
    assert await status(h.app, token) == 200
    replace_with_empty_file(sqlite_path)
    assert await status(h.app, token) == 401
    assert (await h.rev.check(token)).reason is Reason.LOST_STATE
    clock.advance(0.001)
    fresh = h.auth.create_access_token(uid="alice")
    assert await status(h.app, fresh) == 200
    assert claims_of(fresh)["uep"] != claims_of(token)["uep"]
    h.rev.store.sync.close()


# -- implicit refresh: the laundering trap ---------------------------------------------------


COOKIES = {
    "JWT_TOKEN_LOCATION": ["cookies"],
    "JWT_COOKIE_CSRF_PROTECT": False,
    "JWT_COOKIE_SECURE": False,
    "JWT_IMPLICIT_REFRESH_DELTATIME": dt.timedelta(minutes=10),
}


@pytest.fixture
def cookie_app(make: Callable[..., Harness]) -> Harness:
    harness = make(auth_config=COOKIES)
    harness.app.middleware("http")(harness.auth.implicit_refresh_middleware)
    return harness


def near_expiry(h: Harness, uid: str = "alice", **data: Any) -> str:
    return h.auth.create_access_token(uid=uid, expiry=dt.timedelta(minutes=1), data=data or None)


async def test_the_trap_is_real_authx_own_middleware_launders_a_revoked_cookie() -> None:
    # Canary for the tests below: AuthX 1.7.1's own middleware, with the blocklist of AuthX's guide
    # and without authx-epoch, re-mints a revoked cookie into a valid one. If AuthX fixes this,
    # this test says so.
    h = build_app(None, auth_config=COOKIES)
    revoked: set[str] = set()
    h.auth.set_token_blocklist(lambda token, **_: token in revoked)
    h.app.middleware("http")(h.auth.implicit_refresh_middleware)
    token = near_expiry(h)
    revoked.add(token)
    name = h.auth.config.JWT_ACCESS_COOKIE_NAME
    async with client(h.app) as c:
        c.cookies.set(name, token)
        first = await c.get("/protected")
        assert first.status_code == 401
        assert name in first.cookies
        assert (await c.get("/protected")).status_code == 200


@pytest.mark.parametrize("with_app", [True, False])
async def test_authx_own_middleware_registered_before_install_fails_loudly(
    store_url: str, clock: FakeClock, with_app: bool
) -> None:
    # Registered first, AuthX's middleware would re-mint cookies without their jti and session (a
    # logout would not reach them). With the app install() refuses at once; without it, every
    # request that reaches an AuthX dependency fails with the message, never silently.
    app = FastAPI()
    auth = make_auth(**COOKIES)
    auth.handle_errors(app)
    app.middleware("http")(auth.implicit_refresh_middleware)
    if with_app:
        with pytest.raises(ConfigurationError, match="registered before authx_epoch"):
            authx_epoch.install(auth, store=store_url, app=app, clock=clock)
        return
    authx_epoch.install(auth, store=store_url, clock=clock)
    add_routes(app, auth)
    token = auth.create_access_token(uid="alice")
    async with client(app) as c:
        c.cookies.set(auth.config.JWT_ACCESS_COOKIE_NAME, token)
        for _ in range(2):
            with pytest.raises(ConfigurationError, match="registered before authx_epoch"):
                await c.get("/protected")


async def test_implicit_refresh_reminted_token_keeps_stamps_and_session(cookie_app: Harness) -> None:
    h = cookie_app
    token = near_expiry(h, session_id="s1", role="admin")
    async with client(h.app) as c:
        c.cookies.set(h.auth.config.JWT_ACCESS_COOKIE_NAME, token)
        r = await c.get("/protected")
        assert r.status_code == 200
        new = r.cookies.get(h.auth.config.JWT_ACCESS_COOKIE_NAME)
        assert new is not None
        assert new != token
        old_claims, new_claims = claims_of(token), claims_of(new)
        for claim in ("sub", "uep", "gep", "session_id", "role"):
            assert new_claims[claim] == old_claims[claim], claim
        # A renewal is the same credential with a later expiry: revoking one revokes the other.
        assert new_claims["jti"] == old_claims["jti"]
        assert new_claims["exp"] > old_claims["exp"]
        assert new_claims["fresh"] is False
        assert (await c.get("/protected")).status_code == 200
    # the re-minted token is still part of its session: revoking the session revokes it
    await h.rev.revoke_session("s1")
    assert (await h.rev.check(new)).reason is Reason.SESSION_REVOKED


async def test_implicit_refresh_does_not_launder_a_token_after_a_bump(cookie_app: Harness, clock: FakeClock) -> None:
    h = cookie_app
    token = near_expiry(h)
    clock.advance(1)
    await h.rev.bump_user_epoch("alice", reason="password_change")
    name = h.auth.config.JWT_ACCESS_COOKIE_NAME
    async with client(h.app) as c:
        c.cookies.set(name, token)
        r = await c.get("/protected")
        assert r.status_code == 401
        assert name not in r.cookies
        assert "set-cookie" not in r.headers
        assert (await c.get("/protected")).status_code == 401
        assert (await c.get("/protected")).status_code == 401


async def test_implicit_refresh_does_not_launder_a_single_revoked_token(cookie_app: Harness) -> None:
    h = cookie_app
    token = near_expiry(h, session_id="s1")
    other = near_expiry(h, session_id="s1")
    await h.rev.revoke_token(token)
    name = h.auth.config.JWT_ACCESS_COOKIE_NAME
    async with client(h.app) as c:
        c.cookies.set(name, token)
        r = await c.get("/protected")
        assert r.status_code == 401
        assert name not in r.cookies
        assert (await c.get("/protected")).status_code == 401
    # the other token of the same user and session is still refreshed
    async with client(h.app) as c:
        c.cookies.set(name, other)
        r = await c.get("/protected")
        assert r.status_code == 200
        assert r.cookies.get(name) is not None


async def test_implicit_refresh_during_an_outage_mints_nothing(sqlite_path: Path, clock: FakeClock) -> None:
    h = sqlite_harness(sqlite_path, clock, auth_config=COOKIES, fail_open=False)
    h.app.middleware("http")(h.auth.implicit_refresh_middleware)
    token = near_expiry(h)
    name = h.auth.config.JWT_ACCESS_COOKIE_NAME
    async with client(h.app) as c:
        c.cookies.set(name, token)
        with store_down(sqlite_path):
            r = await c.get("/protected")
        assert r.status_code == 503
        assert name not in r.cookies
    h.rev.store.sync.close()


# -- install() refusals and checks ---------------------------------------------------------


def test_install_refuses_a_second_install(store_url: str, clock: FakeClock) -> None:
    auth = make_auth()
    first = authx_epoch.install(auth, store=store_url, clock=clock)
    with pytest.raises(ConfigurationError, match="already installed"):
        authx_epoch.install(auth, store="memory://", clock=clock)
    assert authx_epoch.installed(auth) is first
    token = auth.create_access_token(uid="alice")
    user = first.sync.get_user_record("alice")
    assert user is not None
    assert claims_of(token)["uep"] == user.epoch
    first.store.sync.close()


@pytest.mark.parametrize(
    ("store", "message"),
    [
        ("ftp://host/x", "unknown store URL"),
        ("nonsense", "unknown store URL"),
        ("sqlite://", "needs a path"),
        ("sqlite:///", "needs a path"),
        ("sqlite://relative.db", "needs a path"),
        ("memory://somewhere", "memory://"),
        (42, "store must be"),
        (None, "store must be"),
    ],
)
def test_install_rejects_bad_store_urls_with_a_message_saying_what_to_fix(store: Any, message: str) -> None:
    auth = make_auth()
    with pytest.raises(ConfigurationError, match=message):
        authx_epoch.install(auth, store=store)
    assert authx_epoch.installed(auth) is None
    assert "uep" not in claims_of(auth.create_access_token(uid="alice"))


async def test_an_app_whose_store_cannot_be_opened_starts_answers_503_and_says_why(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A worker started during an outage (a file being restored, a volume not mounted yet, or a
    # mistyped path) comes up, answers 503 to what needs the store, logs why, and is not ready.
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a SQLite database" * 100)
    for path in (tmp_path / "missing" / "dir" / "x.db", blocker / "x.db", tmp_path, junk):
        caplog.clear()
        h = build_app(f"sqlite:///{path}")
        assert authx_epoch.installed(h.auth) is h.rev
        assert str(path) in caplog.text
        assert not await h.rev.ready()
        async with client(h.app) as c:
            assert (await c.post("/login", params={"uid": "alice"})).status_code == 503
        h.rev.sync.close()


async def test_a_worker_started_during_an_outage_serves_once_the_store_is_back(
    sqlite_path: Path, clock: FakeClock
) -> None:
    aside = sqlite_path.with_name("aside.db")
    first = sqlite_harness(sqlite_path, clock)
    token = first.auth.create_access_token(uid="alice")
    first.rev.sync.close()
    os.rename(sqlite_path, aside)
    os.mkdir(sqlite_path)  # the file is unusable while this worker starts
    cold = sqlite_harness(sqlite_path, clock, namespace="")
    async with client(cold.app) as c:
        assert (await c.get("/protected", headers=bearer(token))).status_code == 503
        assert not await cold.rev.ready()
        os.rmdir(sqlite_path)
        os.rename(aside, sqlite_path)
        assert await cold.rev.ready()
        assert (await c.get("/protected", headers=bearer(token))).status_code == 200
    await cold.rev.aclose()


def test_install_takes_a_store_object_and_a_path(tmp_path: Path, clock: FakeClock) -> None:
    store = authx_epoch.MemoryStore()
    rev = authx_epoch.install(make_auth(), store=store, clock=clock)
    assert rev.store is store
    by_path = authx_epoch.install(make_auth(), store=tmp_path / "p.db", clock=clock)
    assert by_path.store.sync.kind == "sqlite"
    assert (tmp_path / "p.db").exists()
    by_path.store.sync.close()


async def test_authx_really_calls_the_installed_callback(h: Harness, clock: FakeClock) -> None:
    token = h.auth.create_access_token(uid="alice")
    assert await h.auth.is_token_in_blocklist(token) is False
    clock.advance(1)
    await h.rev.bump_user_epoch("alice")
    assert await h.auth.is_token_in_blocklist(token) is True


def test_install_refuses_an_authx_that_does_not_call_the_callback() -> None:
    class SilentAuthX(AuthX[Any]):
        def set_token_blocklist(self, callback: Any) -> None:
            # the mistake of AuthX's own example: the callback lands on an attribute nobody reads
            self.token_in_blocklist = callback

    auth: AuthX[Any] = SilentAuthX(config=make_auth().config)
    with pytest.raises(ConfigurationError, match="did not call"):
        authx_epoch.install(auth, store="memory://")


def test_install_rejects_what_is_not_an_authx_instance() -> None:
    with pytest.raises(ConfigurationError, match="AuthX instance"):
        authx_epoch.install(object(), store="memory://")  # type: ignore[arg-type]


def test_install_without_app_registers_no_handler_but_still_checks(store_url: str, clock: FakeClock) -> None:
    auth = make_auth()
    rev = authx_epoch.install(auth, store=store_url, clock=clock)
    token = auth.create_access_token(uid="alice")
    rev.sync.bump_user_epoch("alice")
    assert rev.sync.is_token_revoked(token)
    rev.store.sync.close()


def test_install_stores_the_service_on_the_app(h: Harness) -> None:
    assert h.app.state.authx_epoch is h.rev
    assert authx_epoch.installed(h.auth) is h.rev


async def test_a_durable_store_remembers_when_it_was_first_set_up(sqlite_path: Path, clock: FakeClock) -> None:
    first = sqlite_harness(sqlite_path, clock)
    created = await first.rev.get_global_record()
    assert created is not None
    first.rev.store.sync.close()
    clock.advance(1000)
    second = sqlite_harness(sqlite_path, clock)
    again = await second.rev.get_global_record()
    assert again == created
    second.rev.store.sync.close()


def test_the_default_clock_follows_freezegun(store_url: str) -> None:
    # Apps test with frozen time; the default clock reads time.time() at every call, so tokens minted
    # and checked in frozen time are judged in frozen time (a default bound at import would not be).
    from freezegun import freeze_time

    h = build_app(store_url)
    with freeze_time("2023-05-01 12:00:00"):
        token = h.auth.create_access_token(uid="alice")
        assert h.rev.sync.check(token).reason is Reason.ACCEPTED
        h.rev.sync.bump_user_epoch("alice")
        assert h.rev.sync.check(token).reason is Reason.USER_EPOCH
    h.rev.store.sync.close()


# -- mistakes that would silently switch revocation off --------------------------------------


async def test_a_def_endpoint_calling_the_async_api_without_await_fails_at_the_call(h: Harness) -> None:
    # Without the check the coroutine would be dropped: a 200, and the token still working.
    from authx_epoch import MissingAwaitError

    @h.app.post("/sync-logout")
    def sync_logout(payload: TokenPayload = Depends(h.auth.access_token_required)) -> dict[str, str]:  # noqa: B008
        h.rev.revoke_token(payload)  # type: ignore[unused-coroutine]
        return {}

    @h.app.post("/sync-logout-all")
    def sync_logout_all(payload: TokenPayload = Depends(h.auth.access_token_required)) -> dict[str, str]:  # noqa: B008
        h.rev.bump_user_epoch(payload.sub)  # type: ignore[unused-coroutine]
        return {}

    token = h.auth.create_access_token(uid="alice")
    for path in ("/sync-logout", "/sync-logout-all"):
        async with client(h.app) as c:
            with pytest.raises(MissingAwaitError, match=r"revocation\.sync\."):
                await c.post(path, headers=bearer(token))
    assert await status(h.app, token) == 200  # nothing happened, and the caller was told


async def test_the_sync_twin_is_the_way_in_a_def_endpoint(h: Harness) -> None:
    @h.app.post("/sync-logout")
    def sync_logout(payload: TokenPayload = Depends(h.auth.access_token_required)) -> dict[str, str]:  # noqa: B008
        h.rev.sync.revoke_token(payload)
        return {}

    token = h.auth.create_access_token(uid="alice")
    async with client(h.app) as c:
        assert (await c.post("/sync-logout", headers=bearer(token))).status_code == 200
    assert await status(h.app, token) == 401


def test_a_coroutine_built_outside_a_loop_still_runs_with_asyncio_run(store_url: str, clock: FakeClock) -> None:
    # Scripts do this; it is not the mistake above.
    import asyncio

    h = build_app(store_url, clock=clock)
    record = asyncio.run(h.rev.bump_user_epoch("alice"))
    assert record.epoch > 0
    h.rev.store.sync.close()


@pytest.mark.parametrize("theirs_async", [False, True])
async def test_a_blocklist_registered_after_install_joins_the_check(h: Harness, theirs_async: bool) -> None:
    # AuthX's guide registers its own blocklist; doing so after install() must not switch ours off.
    theirs: set[str] = set()

    def sync_callback(token: str, **_: Any) -> bool:
        return token in theirs

    async def async_callback(token: str, **_: Any) -> bool:
        return token in theirs

    h.auth.set_token_blocklist(async_callback if theirs_async else sync_callback)
    bumped, listed, fine = (h.auth.create_access_token(uid=uid) for uid in ("alice", "bob", "carol"))
    await h.rev.bump_user_epoch("alice")
    theirs.add(listed)
    assert await status(h.app, bumped) == 401
    assert await status(h.app, listed) == 401
    assert await status(h.app, fine) == 200


async def test_without_the_app_store_trouble_is_still_a_503_everywhere(sqlite_path: Path, clock: FakeClock) -> None:
    # install() without app=: never a 500. Until an AuthX dependency has served a request, a path
    # outside them (a login that mints) gets FastAPI's own 503; AuthX's dependencies register the
    # handlers of their errors with the app when they first run (AuthX's own way), and the library
    # registers its 503 with them, in AuthX's shape, for every path from then on.
    app = FastAPI()
    auth = make_auth()
    auth.handle_errors(app)
    rev = authx_epoch.install(auth, store=f"sqlite:///{sqlite_path}", clock=clock)
    add_routes(app, auth)
    access = auth.create_access_token(uid="alice", fresh=True, scopes=["read"])
    async with client(app) as c:
        with store_down(sqlite_path):
            first = await c.post("/login", params={"uid": "b"})
            assert (first.status_code, first.json()) == (503, {"detail": STORE_UNAVAILABLE_MESSAGE})
            assert first.headers.get("retry-after") == "1"
            for path in ("/protected", "/fresh", "/scoped", "/limited"):
                r = await c.get(path, headers=bearer(access))
                assert (r.status_code, r.json(), r.headers.get("retry-after")) == (503, UNAVAILABLE, "1"), path
            again = await c.post("/login", params={"uid": "b"})
            assert (again.status_code, again.json()) == (503, UNAVAILABLE)
        assert (await c.get("/protected", headers=bearer(access))).status_code == 200
    rev.store.sync.close()


def test_a_store_error_says_its_cause_in_logs_not_http() -> None:
    from authx_epoch import StoreUnavailableError

    error = StoreUnavailableError("SQLite store '/x.db' is unavailable: disk I/O error")
    assert str(error) == "SQLite store '/x.db' is unavailable: disk I/O error"
    assert (error.status_code, error.detail) == (503, STORE_UNAVAILABLE_MESSAGE)

"""The audit trail (when and why an epoch moved), the ``on_decision`` hook, and what the logs may say.

Real AuthX apps over real stores; the injectable clock stands in for time.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from authx import AuthX, AuthXConfig, TokenPayload
from fastapi import Depends, FastAPI

import authx_epoch
from authx_epoch import DecisionEvent, EpochRevocation, Reason, SqliteStore
from authx_epoch.stores import Store
from tests.conftest import FakeClock

pytestmark = pytest.mark.anyio

SECRET = "authx-epoch-observability-secret-0123456789"


@dataclass
class Served:
    auth: AuthX[Any]
    revocation: EpochRevocation
    app: FastAPI
    events: list[DecisionEvent]

    async def get(self, token: str) -> int:
        transport = httpx.ASGITransport(app=self.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            response = await client.get("/protected", headers={"Authorization": f"Bearer {token}"})
        return response.status_code


def serve(store: Any, clock: FakeClock, **options: Any) -> Served:
    events: list[DecisionEvent] = []
    auth: AuthX[Any] = AuthX(config=AuthXConfig(JWT_SECRET_KEY=SECRET, JWT_TOKEN_LOCATION=["headers"]))
    app = FastAPI()
    auth.handle_errors(app)
    options.setdefault("on_decision", events.append)
    revocation = authx_epoch.install(auth, store, app=app, clock=clock, **options)
    access = Depends(auth.access_token_required)

    @app.get("/protected")
    async def protected(payload: TokenPayload = access) -> dict[str, Any]:
        return {"sub": payload.sub}

    return Served(auth, revocation, app, events)


class BreakableSqlite:
    """A real SQLite store whose directory can be swapped for one where the database is a directory."""

    def __init__(self, root: Path) -> None:
        self.home, self.aside = root / "home", root / "aside"
        self.home.mkdir()
        self.store = SqliteStore(self.home / "revocation.db")

    def break_(self) -> None:
        os.rename(self.home, self.aside)
        (self.home / "revocation.db").mkdir(parents=True)

    def restore(self) -> None:
        (self.home / "revocation.db").rmdir()
        self.home.rmdir()
        os.rename(self.aside, self.home)


@pytest.fixture
def breakable(tmp_path: Path) -> Iterator[BreakableSqlite]:
    target = BreakableSqlite(tmp_path)
    yield target
    target.store.close()


# -- the audit trail ----------------------------------------------------------------------------


async def test_every_bump_keeps_when_and_why(store: Store, clock: FakeClock) -> None:
    served = serve(store, clock)
    rev = served.revocation
    served.auth.create_access_token(uid="alice")
    minted = await rev.get_user_record("alice")
    assert minted is not None
    assert (minted.bumped_at, minted.reason) == (None, None)

    clock.advance(10)
    first = await rev.bump_user_epoch("alice", reason="password changed")
    assert (first.bumped_at, first.reason) == (clock.now, "password changed")
    assert await rev.get_user_record("alice") == first
    assert rev.sync.get_user_record("alice") == first

    clock.advance(5)
    second = rev.sync.bump_user_epoch("alice", reason="suspended by support")
    assert second.epoch > first.epoch
    assert (second.bumped_at, second.reason) == (clock.now, "suspended by support")
    assert second.created_at == minted.created_at
    assert await rev.get_user_record("alice") == second

    clock.advance(1)
    quiet = await rev.bump_user_epoch("alice")
    assert (quiet.bumped_at, quiet.reason) == (clock.now, None)

    global_ = await rev.bump_global_epoch(reason="signing key rotated")
    assert (global_.bumped_at, global_.reason) == (clock.now, "signing key rotated")
    assert await rev.get_global_record() == global_


# -- the on_decision hook ------------------------------------------------------------------------


async def test_the_hook_receives_every_reason_with_timing(store: Store, clock: FakeClock) -> None:
    served = serve(store, clock)
    rev, auth, events = served.revocation, served.auth, served.events
    alice = auth.create_access_token(uid="alice")
    bob = auth.create_access_token(uid="bob")
    carol = auth.create_access_token(uid="carol", data={"session_id": "carol-1"})
    dave = auth.create_access_token(uid="dave")
    erin = auth.create_access_token(uid="erin")
    now = int(clock.now)
    unstamped = jwt.encode(
        {"sub": "frank", "jti": "frank-1", "type": "access", "fresh": False, "iat": now, "exp": now + 600},
        SECRET,
        algorithm="HS256",
    )
    assert await served.get(alice) == 200

    await rev.bump_user_epoch("alice", reason="logout everywhere")
    await rev.revoke_token(bob)
    await rev.revoke_session("carol-1")
    assert [await served.get(token) for token in (alice, bob, carol, dave)] == [401, 401, 401, 200]
    assert await served.get("garbage") in (401, 422)

    await rev.bump_global_epoch(reason="incident")
    assert await served.get(dave) == 401
    store.sync.wipe()
    assert await served.get(erin) == 401
    assert await served.get(unstamped) == 401

    reasons = [event.decision.reason for event in events]
    expected = [
        Reason.ACCEPTED,
        Reason.USER_EPOCH,
        Reason.TOKEN_REVOKED,
        Reason.SESSION_REVOKED,
        Reason.ACCEPTED,
        Reason.NOT_OURS,
        Reason.GLOBAL_EPOCH,
        Reason.LOST_STATE,
        Reason.UNSTAMPED,
    ]
    assert reasons == expected
    by_reason = {event.decision.reason: event for event in events}
    assert by_reason[Reason.USER_EPOCH].uid == "alice"
    assert by_reason[Reason.TOKEN_REVOKED].jti == auth._decode_token(bob).jti
    assert by_reason[Reason.SESSION_REVOKED].session_id == "carol-1"
    assert by_reason[Reason.NOT_OURS].uid is None
    assert all(not event.decision.accepted for event in events if event.decision.reason is Reason.LOST_STATE)
    assert all(0 < event.duration < 5 for event in events)


async def test_the_hook_sees_store_outages(breakable: BreakableSqlite, clock: FakeClock) -> None:
    closed = serve(breakable.store, clock)
    token = closed.auth.create_access_token(uid="gina")
    breakable.break_()
    try:
        assert await closed.get(token) == 503
        events_open: list[DecisionEvent] = []
        opened = EpochRevocation(breakable.store, clock=clock, fail_open=True, on_decision=events_open.append)
        decision = await opened.check(token)
    finally:
        breakable.restore()
    assert [event.decision.reason for event in closed.events] == [Reason.STORE_UNAVAILABLE]
    assert closed.events[0].decision.accepted is False
    assert closed.events[0].uid == "gina"
    assert (decision.accepted, decision.reason) == (True, Reason.FAIL_OPEN)
    assert [event.decision.reason for event in events_open] == [Reason.FAIL_OPEN]
    assert await closed.get(token) == 200


async def test_a_failing_hook_never_changes_the_decision(
    sqlite_store: Store, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(event: DecisionEvent) -> None:
        raise RuntimeError("metrics backend down")

    served = serve(sqlite_store, clock, on_decision=broken)
    token = served.auth.create_access_token(uid="hank")
    with caplog.at_level(logging.ERROR, logger="authx_epoch"):
        assert await served.get(token) == 200
        await served.revocation.bump_user_epoch("hank")
        assert await served.get(token) == 401
    assert any("on_decision hook raised" in record.getMessage() for record in caplog.records)


# -- logs: uids yes, whole tokens never -----------------------------------------------------


async def test_logs_name_uids_but_never_hold_a_whole_token(
    breakable: BreakableSqlite, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(event: DecisionEvent) -> None:
        raise RuntimeError(f"hook failed on {event.decision.reason.value}")

    caplog.set_level(logging.DEBUG, logger="authx_epoch")
    served = serve(breakable.store, clock, on_decision=broken)
    auth, rev = served.auth, served.revocation
    tokens = {
        "accepted": auth.create_access_token(uid="ivy"),
        "user": auth.create_access_token(uid="jack"),
        "token": auth.create_access_token(uid="kate"),
        "session": auth.create_access_token(uid="liam", data={"session_id": "liam-phone"}),
        "refresh": auth.create_refresh_token(uid="mia"),
        "forged": auth.create_access_token(uid="ivy")[:-4] + "AAAA",
    }
    assert await served.get(tokens["accepted"]) == 200
    await rev.bump_user_epoch("jack", reason="logout everywhere")
    await rev.revoke_token(tokens["token"])
    await rev.revoke_session("liam-phone")
    await rev.revoke_token(tokens["refresh"])
    for name in ("user", "token", "session"):
        assert await served.get(tokens[name]) == 401, name
    assert await served.get(tokens["forged"]) == 422  # AuthX's own answer to a bad signature
    await rev.bump_global_epoch(reason="drill")
    assert await served.get(tokens["accepted"]) == 401

    fail_open = EpochRevocation(breakable.store, clock=clock, fail_open=True, on_decision=broken)
    breakable.break_()
    try:
        assert await served.get(tokens["accepted"]) == 503
        assert (await fail_open.check(tokens["accepted"])).reason is Reason.FAIL_OPEN
        fail_open.sync.check(tokens["user"])
    finally:
        breakable.restore()
    with pytest.raises(authx_epoch.InvalidTokenError):
        await rev.revoke_token(tokens["forged"])

    records = caplog.records
    assert len(records) >= 8
    texts = []
    for record in records:
        text = record.getMessage()
        if record.exc_info:
            text += logging.Formatter().formatException(record.exc_info)
        texts.append(text)
    everything = "\n".join(texts)
    for name, token in tokens.items():
        assert token not in everything, name
        # Not even the signature part, which alone would let nobody forge anything, but is a secret's output.
        assert token.rsplit(".", 1)[1] not in everything, name
    for uid in ("jack", "kate", "liam", "ivy"):
        assert uid in everything, uid
    assert "fail_open" in everything
    assert "503" in everything


async def test_the_cli_log_holds_no_token(tmp_path: Path, clock: FakeClock) -> None:
    """``authx-epoch -vv inspect`` shows the library's log; the token it was given is not in it."""
    from tests.test_cli import run

    url = f"sqlite:///{tmp_path / 'cli.db'}"
    served = serve(url, FakeClock())
    token = served.auth.create_access_token(uid="nora", expiry=dt.timedelta(minutes=5))
    await served.revocation.bump_user_epoch("nora", reason="test")
    served.revocation.store.sync.close()
    result = run("-vv", "inspect", token, store=url)
    assert result.code == 1
    assert "token rejected: uid='nora'" in result.err
    assert token not in result.err
    assert token not in result.out

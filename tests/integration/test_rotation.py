"""Sessions and refresh-token rotation through real AuthX in a real FastAPI app, on every store.

A login mints a pair for a new session (``create_token_pair``); ``/refresh`` rotates it
(``rotate_refresh_token``); ``/logout-device`` revokes the session (AuthX's ``revoke_session``,
wrapped by ``install``). The clock is a ``FakeClock``: the grace interval is crossed by moving it.
"""

# No "from __future__ import annotations": FastAPI must resolve the route annotations, which name
# the fixture's local ``auth``.
import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any

import httpx
import pytest
from authx import AuthX, TokenPayload
from fastapi import Depends, FastAPI, Request

import authx_epoch
from authx_epoch import EpochRevocation, Reason, RefreshTokenReusedError, SessionTokens
from authx_epoch.records import RECORD_SLACK
from authx_epoch.stores import Store
from tests.conftest import FakeClock
from tests.helpers import bearer, claims_of, make_auth

pytestmark = pytest.mark.anyio

GRACE = dt.timedelta(seconds=5)


@dataclass
class App:
    app: FastAPI
    auth: AuthX[Any]
    rev: EpochRevocation
    http: httpx.AsyncClient
    clock: FakeClock

    async def login(self, uid: str = "alice") -> dict[str, Any]:
        response = await self.http.post("/login", params={"uid": uid})
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def refresh(self, refresh_token: str) -> httpx.Response:
        return await self.http.post("/refresh", headers=bearer(refresh_token))

    async def me(self, access_token: str) -> int:
        return (await self.http.get("/me", headers=bearer(access_token))).status_code


@pytest.fixture
async def served(store: Store, clock: FakeClock) -> AsyncIterator[App]:
    app = FastAPI()
    auth = make_auth()
    auth.handle_errors(app)
    rev = authx_epoch.install(auth, store=store, app=app, clock=clock, refresh_reuse_grace=GRACE)

    @app.post("/login")
    async def login(uid: str, request: Request) -> SessionTokens:
        return await rev.create_token_pair(uid, fresh=True, request=request, data={"tenant": "acme"})

    @app.post("/refresh")
    async def refresh(request: Request) -> SessionTokens:
        token = (request.headers.get("authorization") or "").removeprefix("Bearer ")
        return await rev.rotate_refresh_token(token)

    @app.get("/me")
    async def me(payload: Annotated[TokenPayload, Depends(auth.access_token_required)]) -> dict[str, Any]:
        return {"sub": payload.sub, "session_id": (payload.model_extra or {}).get("session_id")}

    @app.post("/logout-device")
    async def logout_device(payload: Annotated[TokenPayload, Depends(auth.access_token_required)]) -> dict[str, str]:
        await auth.revoke_session((payload.model_extra or {})["session_id"])
        return {"message": "this device is logged out"}

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app") as http:
        yield App(app=app, auth=auth, rev=rev, http=http, clock=clock)


async def test_a_login_mints_one_session_for_both_tokens(served: App) -> None:
    pair = await served.login()
    access, refresh = claims_of(pair["access_token"]), claims_of(pair["refresh_token"])
    assert access["session_id"] == refresh["session_id"] == pair["session_id"]
    assert access["sgen"] == refresh["sgen"]
    assert (access["type"], refresh["type"], access["fresh"], access["tenant"]) == ("access", "refresh", True, "acme")
    assert await served.me(pair["access_token"]) == 200
    record = await served.rev.get_session_record(pair["session_id"])
    assert record is not None
    assert record.generation == access["sgen"]
    assert record.uid == "alice"


async def test_logout_of_one_device_kills_its_access_and_refresh_tokens_only(served: App) -> None:
    laptop, phone = await served.login(), await served.login()
    assert (await served.http.post("/logout-device", headers=bearer(laptop["access_token"]))).status_code == 200
    assert await served.me(laptop["access_token"]) == 401
    response = await served.refresh(laptop["refresh_token"])
    assert (response.status_code, response.json()["error_type"]) == (401, "RevokedTokenError")
    assert (await served.rev.check(laptop["refresh_token"])).reason is Reason.SESSION_REVOKED
    # The other device is untouched, and rotates as before.
    assert await served.me(phone["access_token"]) == 200
    rotated = await served.refresh(phone["refresh_token"])
    assert rotated.status_code == 200
    assert await served.me(rotated.json()["access_token"]) == 200


async def test_sequential_rotations_move_the_generation_and_keep_the_session(served: App) -> None:
    pair = await served.login()
    generations = [claims_of(pair["refresh_token"])["sgen"]]
    first_access = pair["access_token"]
    for _ in range(4):
        served.clock.advance(30)
        response = await served.refresh(pair["refresh_token"])
        assert response.status_code == 200, response.text
        pair = response.json()
        claims = claims_of(pair["access_token"])
        assert claims["session_id"] == pair["session_id"] == claims_of(pair["refresh_token"])["session_id"]
        assert claims["tenant"] == "acme"  # the application's claims travel with the session
        assert claims["fresh"] is False
        generations.append(claims["sgen"])
        assert await served.me(pair["access_token"]) == 200
    assert generations == sorted(set(generations))
    # Access tokens of earlier generations live out their time: rotation judges refresh tokens only.
    assert await served.me(first_access) == 200
    assert (await served.rev.stats()).sessions == 1


async def test_concurrent_refreshes_with_one_token_both_succeed(served: App) -> None:
    pair = await served.login()
    first, second = await asyncio.gather(served.refresh(pair["refresh_token"]), served.refresh(pair["refresh_token"]))
    assert (first.status_code, second.status_code) == (200, 200), (first.text, second.text)
    for answer in (first.json(), second.json()):
        assert await served.me(answer["access_token"]) == 200
    # Both answers belong to the live session: each refresh token works once more.
    nxt = await served.refresh(first.json()["refresh_token"])
    assert nxt.status_code == 200
    assert await served.me(nxt.json()["access_token"]) == 200


async def test_a_retry_within_the_grace_gets_a_working_pair(served: App) -> None:
    pair = await served.login()
    assert (await served.refresh(pair["refresh_token"])).status_code == 200
    served.clock.advance(GRACE.total_seconds() - 1)  # the first answer was lost; the client retries
    retry = await served.refresh(pair["refresh_token"])
    assert retry.status_code == 200, retry.text
    assert await served.me(retry.json()["access_token"]) == 200
    served.clock.advance(60)
    assert (await served.refresh(retry.json()["refresh_token"])).status_code == 200


async def test_a_replay_after_the_grace_revokes_the_whole_session(served: App) -> None:
    victim = await served.login()
    stolen = victim["refresh_token"]
    other_device = await served.login()
    served.clock.advance(60)
    victim_next = (await served.refresh(stolen)).json()  # the victim rotates first
    assert await served.me(victim_next["access_token"]) == 200
    served.clock.advance(GRACE.total_seconds() + 1)
    replay = await served.refresh(stolen)  # the thief replays the stolen one
    assert replay.status_code == 401
    assert replay.json()["error_type"] == "RefreshTokenReusedError"
    # Both parties are out: every token of the session is rejected, access and refresh.
    for token in (victim_next["access_token"], victim["access_token"]):
        assert await served.me(token) == 401
    for token in (victim_next["refresh_token"], stolen):
        response = await served.refresh(token)
        assert (response.status_code, response.json()["error_type"]) == (401, "RevokedTokenError")
    record = await served.rev.get_session_record(victim["session_id"])
    assert record is not None
    assert record.revoked
    # Nobody else is touched.
    assert await served.me(other_device["access_token"]) == 200


async def test_a_replay_raises_refresh_token_reused_error_from_the_service(served: App) -> None:
    pair = await served.login()
    await served.rev.rotate_refresh_token(pair["refresh_token"])
    served.clock.advance(GRACE.total_seconds() + 0.5)
    with pytest.raises(RefreshTokenReusedError):
        await served.rev.rotate_refresh_token(pair["refresh_token"])
    assert (await served.rev.check(pair["access_token"])).reason is Reason.SESSION_REVOKED


async def test_lost_session_state_is_a_rejection_never_a_new_pair(served: App) -> None:
    pair = await served.login()
    served.rev.store.sync.wipe()
    response = await served.refresh(pair["refresh_token"])
    assert response.status_code == 401
    assert (await served.rev.check(pair["access_token"])).reason is Reason.LOST_STATE
    again = await served.login()
    assert await served.me(again["access_token"]) == 200


async def test_session_records_are_counted_and_vanish_with_the_refresh_token(served: App) -> None:
    pairs = [await served.login(f"user-{index}") for index in range(3)]
    await served.rev.revoke_session(pairs[0]["session_id"])
    stats = await served.rev.stats()
    assert (stats.sessions, stats.revoked_sessions) == (3, 1)
    refresh_life = served.auth.config.JWT_REFRESH_TOKEN_EXPIRES
    assert isinstance(refresh_life, dt.timedelta)
    served.clock.advance(refresh_life.total_seconds() + 60 + RECORD_SLACK + 1)
    stats = await served.rev.stats()
    assert (stats.sessions, stats.revoked_sessions) == (0, 0)

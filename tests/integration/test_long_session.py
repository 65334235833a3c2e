"""A long cookie session with the implicit refresh: a renewal keeps every record it needs alive.

Issue 10 item 2: a browser making a request every five minutes with AuthX's default lifetimes
(15-minute access cookies, renewed in their last 10 minutes) stays signed in for as long as it keeps
coming back, exactly as with AuthX alone. Before the fix, renewals re-minted cookies with the old
stamps but never extended the user's record, and the session died with ``lost_state`` at t+20 min
(memory) or t+80 min (SQLite, Redis).

AuthX and PyJWT read the real clock, so the test moves it with time-machine; the library's default
clock reads ``time.time()`` and moves with it. Every store.
"""

import datetime as dt
from typing import Annotated, Any

import httpx
import pytest
import time_machine
from authx import TokenPayload
from fastapi import Depends, FastAPI, Response

import authx_epoch
from authx_epoch.stores import Store
from tests.helpers import make_auth
from tests.properties import evidence

pytestmark = pytest.mark.anyio

#: Eight hours of a request every five minutes.
SESSION = dt.timedelta(hours=8)
EVERY = dt.timedelta(minutes=5)


def cookie_app(store: Store) -> tuple[FastAPI, Any, str]:
    app = FastAPI()
    auth = make_auth(JWT_TOKEN_LOCATION=["cookies"], JWT_COOKIE_CSRF_PROTECT=False, JWT_COOKIE_SECURE=False)
    auth.handle_errors(app)
    rev = authx_epoch.install(auth, store=store, app=app)
    app.middleware("http")(auth.implicit_refresh_middleware)

    @app.post("/login")
    async def login(response: Response) -> dict[str, str]:
        auth.set_access_cookies(auth.create_access_token(uid="alice"), response)
        return {}

    @app.get("/me")
    async def me(payload: Annotated[TokenPayload, Depends(auth.access_token_required)]) -> dict[str, str]:
        return {"sub": payload.sub}

    return app, rev, auth.config.JWT_ACCESS_COOKIE_NAME


async def test_a_cookie_session_lives_as_long_as_its_client_keeps_coming_back(
    store: Store, request: pytest.FixtureRequest
) -> None:
    app, rev, cookie_name = cookie_app(store)
    label = request.node.callspec.params["any_store"].removesuffix("_store")
    start = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=1)
    renewals = requests = 0
    with time_machine.travel(start, tick=False) as traveller:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as browser:
            assert (await browser.post("/login")).status_code == 200
            elapsed = dt.timedelta(0)
            while elapsed < SESSION:
                traveller.shift(EVERY)
                elapsed += EVERY
                response = await browser.get("/me")
                requests += 1
                assert response.status_code == 200, f"signed out after {elapsed}: {response.text}"
                renewals += "set-cookie" in response.headers
            cookie = browser.cookies[cookie_name]
        # Still signed in at the end, and still revocable: logging out everywhere ends it at once.
        assert (await rev.check(cookie)).accepted
        await rev.bump_user_epoch("alice")
        assert not (await rev.check(cookie)).accepted
    evidence.add(f"long_session.requests.{label}", requests)
    evidence.add(f"long_session.renewals.{label}", renewals)
    assert renewals >= SESSION / dt.timedelta(minutes=15)

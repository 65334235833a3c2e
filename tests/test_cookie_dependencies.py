"""The FastAPI dependencies for sessions: rotating the refresh token wherever AuthX reads it, and the session id.

``revocation.rotated_tokens`` rotates the request's refresh token, read and verified exactly as
``auth.refresh_token_required`` does it (CSRF double submit included when it comes from cookies),
and sets the new cookies; ``revocation.current_session`` names the session of the access token.
"""

from __future__ import annotations

from typing import Any

import pytest
from authx import AuthX
from fastapi import Depends, FastAPI, Response

import authx_epoch
from authx_epoch import EpochRevocation, SessionTokens
from tests.helpers import bearer, claims_of, client, make_auth

pytestmark = pytest.mark.anyio

COOKIES: dict[str, Any] = {
    "JWT_TOKEN_LOCATION": ["cookies"],
    "JWT_COOKIE_SECURE": False,
    "JWT_COOKIE_CSRF_PROTECT": True,
}


def session_app(store_url: str, **config: Any) -> tuple[FastAPI, AuthX[Any], EpochRevocation]:
    app = FastAPI()
    auth = make_auth(**config)
    auth.handle_errors(app)
    rev = authx_epoch.install(auth, store=store_url, app=app)

    @app.post("/login")
    async def login(uid: str, response: Response) -> SessionTokens:
        pair = await rev.create_token_pair(uid, fresh=True)
        auth.set_access_cookies(pair.access_token, response)
        auth.set_refresh_cookies(pair.refresh_token, response)
        return pair

    @app.post("/refresh")
    async def refresh(tokens: SessionTokens = Depends(rev.rotated_tokens)) -> SessionTokens:  # noqa: B008
        return tokens

    @app.post("/logout-device")
    async def logout_device(session_id: str = Depends(rev.current_session)) -> dict[str, str]:
        await rev.revoke_session(session_id)
        return {"session_id": session_id}

    return app, auth, rev


@pytest.fixture(params=["memory", "sqlite"])
def store_url(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    return "memory://" if request.param == "memory" else f"sqlite:///{tmp_path}/revocation.db"


async def test_a_cookie_refresh_needs_the_csrf_header_and_sets_the_new_cookies(store_url: str) -> None:
    app, auth, rev = session_app(store_url, **COOKIES)
    config = auth.config
    async with client(app) as c:
        pair = SessionTokens.model_validate((await c.post("/login", params={"uid": "alice"})).json())
        refresh_csrf = c.cookies[config.JWT_REFRESH_CSRF_COOKIE_NAME]
        # The refresh cookie alone (a cross-site form post) is refused, as AuthX refuses it.
        refused = await c.post("/refresh")
        assert (refused.status_code, refused.json()["error_type"]) == (401, "MissingTokenError"), refused.text
        forged = await c.post("/refresh", headers={config.JWT_REFRESH_CSRF_HEADER_NAME: "not-the-cookie"})
        assert (forged.status_code, forged.json()["error_type"]) == (401, "CSRFError"), forged.text
        assert (await rev.get_session_record(pair.session_id)).generation == claims_of(pair.refresh_token)["sgen"]  # type: ignore[union-attr]
        # With the double-submit header it rotates, and the browser gets the new pair as cookies.
        rotated = await c.post("/refresh", headers={config.JWT_REFRESH_CSRF_HEADER_NAME: refresh_csrf})
        assert rotated.status_code == 200, rotated.text
        new = SessionTokens.model_validate(rotated.json())
        assert new.session_id == pair.session_id
        assert rotated.cookies[config.JWT_ACCESS_COOKIE_NAME] == new.access_token
        assert rotated.cookies[config.JWT_REFRESH_COOKIE_NAME] == new.refresh_token
        assert claims_of(new.refresh_token)["sgen"] > claims_of(pair.refresh_token)["sgen"]


async def test_in_headers_the_dependency_rotates_and_sets_no_cookie(store_url: str) -> None:
    app, _, _ = session_app(store_url)
    async with client(app) as c:
        pair = SessionTokens.model_validate((await c.post("/login", params={"uid": "alice"})).json())
        c.cookies.clear()
        rotated = await c.post("/refresh", headers=bearer(pair.refresh_token))
        assert rotated.status_code == 200, rotated.text
        assert "set-cookie" not in rotated.headers
        # The replaced token is answered once within the grace, then it is a replay.
        assert (await c.post("/refresh", headers=bearer(pair.refresh_token))).status_code == 200
        replay = await c.post("/refresh", headers=bearer(pair.refresh_token))
        assert replay.status_code == 401
        assert replay.json()["error_type"] == "RefreshTokenReusedError"


async def test_an_access_token_is_no_refresh_token(store_url: str) -> None:
    app, _, _ = session_app(store_url)
    async with client(app) as c:
        pair = SessionTokens.model_validate((await c.post("/login", params={"uid": "alice"})).json())
        c.cookies.clear()
        response = await c.post("/refresh", headers=bearer(pair.access_token))
        assert response.status_code == 401
        assert response.json()["error_type"] == "RefreshTokenRequiredError"


async def test_the_current_session_is_the_access_tokens(store_url: str) -> None:
    app, auth, rev = session_app(store_url)
    async with client(app) as c:
        laptop = SessionTokens.model_validate((await c.post("/login", params={"uid": "alice"})).json())
        phone = SessionTokens.model_validate((await c.post("/login", params={"uid": "alice"})).json())
        c.cookies.clear()
        response = await c.post("/logout-device", headers=bearer(laptop.access_token))
        assert response.json() == {"session_id": laptop.session_id}
        assert not (await rev.check(laptop.refresh_token)).accepted
        assert (await rev.check(phone.access_token)).accepted
        # A token minted without a session names none: AuthX's 401, nothing revoked.
        plain = auth.create_access_token(uid="alice")
        refused = await c.post("/logout-device", headers=bearer(plain))
        assert refused.status_code == 401
        assert (await rev.check(phone.refresh_token)).accepted

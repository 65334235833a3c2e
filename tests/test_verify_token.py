"""Every AuthX API that says "this token is valid" asks the store (invariant 9), on every store.

AuthX's dependencies call the blocklist callback and then ``verify_token``; its optional-auth
pattern (``get_token_from_request(optional=True)`` then ``verify_token``), its WebSocket dependency
and its own implicit-refresh middleware call ``verify_token`` alone. After ``install()``,
``verify_token`` refuses revoked tokens too, and the dependencies' path still costs one store lookup.
"""

from __future__ import annotations

import asyncio
import warnings
from typing import Any, Optional

import pytest
from authx import AuthX, RequestToken
from authx.exceptions import RevokedTokenError
from fastapi import FastAPI, Request
from starlette.exceptions import StarletteDeprecationWarning
from starlette.websockets import WebSocketDisconnect

import authx_epoch
from authx_epoch import EpochRevocation
from authx_epoch.stores import Store
from tests.helpers import add_routes, bearer, client, make_auth
from tests.hooked import HookedStore, elsewhere

pytestmark = pytest.mark.anyio


class Counting(HookedStore):
    """Counts the check reads (``fetch``) on both sides."""

    def __init__(self, inner: Store) -> None:
        super().__init__(inner)
        self.fetches = 0

    def take(self, operation: str) -> Any:
        if operation == "fetch":
            self.fetches += 1
        return super().take(operation)


def optional_auth_app(store: Store) -> tuple[FastAPI, AuthX[Any], EpochRevocation, Counting]:
    app = FastAPI()
    auth = make_auth()
    auth.handle_errors(app)
    counting = Counting(store)
    rev = authx_epoch.install(auth, store=counting, app=app)
    add_routes(app, auth)

    @app.get("/maybe")
    async def maybe(request: Request) -> dict[str, Optional[str]]:
        # AuthX's documented optional authentication.
        token = await auth.get_token_from_request(request, optional=True)
        if token is None:
            return {"sub": None}
        return {"sub": auth.verify_token(token).sub}

    return app, auth, rev, counting


@pytest.mark.parametrize("how", ["bump", "revoke_token", "global"])
async def test_the_optional_auth_pattern_refuses_a_revoked_token(store: Store, how: str) -> None:
    app, auth, rev, _ = optional_auth_app(store)
    token = auth.create_access_token(uid="alice")
    async with client(app) as c:
        assert (await c.get("/maybe", headers=bearer(token))).json() == {"sub": "alice"}
        if how == "bump":
            await rev.bump_user_epoch("alice")
        elif how == "global":
            await rev.bump_global_epoch()
        else:
            await rev.revoke_token(token)
        response = await c.get("/maybe", headers=bearer(token))
        assert response.status_code == 401
        assert response.json() == {"message": "Invalid token", "error_type": "RevokedTokenError"}
        assert (await c.get("/maybe")).json() == {"sub": None}


async def test_verify_token_outside_a_request_refuses_a_revoked_token(store: Store) -> None:
    _, auth, rev, _ = optional_auth_app(store)
    token = auth.create_access_token(uid="alice")
    request_token = RequestToken(token=token, location="headers")
    assert auth.verify_token(request_token).sub == "alice"
    await rev.bump_user_epoch("alice")
    with pytest.raises(RevokedTokenError):
        auth.verify_token(request_token)


async def test_verify_token_still_answers_authx_own_errors_first(store: Store) -> None:
    _, auth, _, _ = optional_auth_app(store)
    refresh = auth.create_refresh_token(uid="alice")
    with pytest.raises(Exception, match="'access' token required") as raised:
        auth.verify_token(RequestToken(token=refresh, location="headers", type="access"))
    assert not isinstance(raised.value, RevokedTokenError)


async def test_a_dependency_asks_the_store_once_per_request(store: Store) -> None:
    app, auth, _, counting = optional_auth_app(store)
    token = auth.create_access_token(uid="alice")
    async with client(app) as c:
        before = counting.fetches
        assert (await c.get("/protected", headers=bearer(token))).status_code == 200
        assert counting.fetches - before == 1
        before = counting.fetches
        assert (await c.get("/maybe", headers=bearer(token))).status_code == 200
        assert counting.fetches - before == 1


async def test_the_callbacks_answer_is_not_reused_once_other_work_could_run(store: Store) -> None:
    # The callback accepted the token; then the loop ran other work (another request revoked it);
    # a verify_token of the same token now must ask again.
    _, auth, rev, _ = optional_auth_app(store)
    token = auth.create_access_token(uid="alice")
    assert not await auth.is_token_in_blocklist(token)
    await asyncio.sleep(0)
    elsewhere(rev.sync.bump_user_epoch, "alice")
    with pytest.raises(RevokedTokenError):
        auth.verify_token(RequestToken(token=token, location="headers"))


async def test_the_callbacks_answer_serves_one_verify_only(store: Store) -> None:
    _, auth, _, counting = optional_auth_app(store)
    token = auth.create_access_token(uid="alice")
    request_token = RequestToken(token=token, location="headers")
    assert not await auth.is_token_in_blocklist(token)
    before = counting.fetches
    auth.verify_token(request_token)
    assert counting.fetches == before
    auth.verify_token(request_token)
    assert counting.fetches == before + 1


def test_the_websocket_dependency_refuses_a_revoked_token(store: Store) -> None:
    with warnings.catch_warnings():
        # Starlette prefers the httpx2 package for its TestClient; httpx works the same here.
        warnings.simplefilter("ignore", StarletteDeprecationWarning)
        from starlette.testclient import TestClient

    app, auth, rev, _ = optional_auth_app(store)
    token = auth.create_access_token(uid="alice")
    with TestClient(app) as test_client:
        with test_client.websocket_connect(f"/ws?token={token}") as ws:
            assert ws.receive_json() == {"sub": "alice"}
        elsewhere(rev.sync.bump_user_epoch, "alice")
        with pytest.raises(WebSocketDisconnect), test_client.websocket_connect(f"/ws?token={token}") as ws:
            ws.receive_json()

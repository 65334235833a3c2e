"""Builders shared by the tests: real AuthX instances in real FastAPI apps, and raw tokens.

``build_app`` makes the same app with or without authx-epoch installed, so a test can compare
what the library answers with what AuthX alone answers for the same request.
"""

import base64
import datetime as dt
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any, Optional

import httpx
import jwt
from authx import AuthX, AuthXConfig, TokenPayload
from fastapi import Depends, FastAPI, WebSocket

import authx_epoch
from authx_epoch import EpochRevocation
from authx_epoch.stores import StoreSpec

SECRET = "authx-epoch-tests-secret-key-0123456789abcdef"
ALGORITHM = "HS256"


def make_auth(**config: Any) -> AuthX[Any]:
    """An AuthX instance reading tokens from headers (unless told otherwise)."""
    settings: dict[str, Any] = {"JWT_SECRET_KEY": SECRET, "JWT_TOKEN_LOCATION": ["headers"]}
    settings.update(config)
    return AuthX(config=AuthXConfig(**settings))


@dataclass
class Harness:
    """One app under test: the app, its AuthX and (when installed) the revocation service."""

    app: FastAPI
    auth: AuthX[Any]
    revocation: Optional[EpochRevocation]

    @property
    def rev(self) -> EpochRevocation:
        """The installed service (fails the test if this harness has none)."""
        assert self.revocation is not None
        return self.revocation


def add_routes(app: FastAPI, auth: AuthX[Any]) -> None:
    """Every path that checks or mints tokens, the way an application writes them."""

    @app.get("/protected")
    async def protected(payload: Annotated[TokenPayload, Depends(auth.access_token_required)]) -> dict[str, Any]:
        return {"sub": payload.sub, "jti": payload.jti}

    @app.post("/refresh")
    async def refresh(payload: Annotated[TokenPayload, Depends(auth.refresh_token_required)]) -> dict[str, Any]:
        return {"access_token": auth.create_access_token(uid=payload.sub)}

    @app.get("/fresh")
    async def fresh(payload: Annotated[TokenPayload, Depends(auth.fresh_token_required)]) -> dict[str, Any]:
        return {"sub": payload.sub}

    @app.get("/scoped")
    async def scoped(payload: Annotated[TokenPayload, Depends(auth.scopes_required("read"))]) -> dict[str, Any]:
        return {"sub": payload.sub}

    limited_payload = Annotated[TokenPayload, Depends(auth.rate_limited(max_requests=10_000))]

    @app.get("/limited")
    async def limited(payload: limited_payload) -> dict[str, Any]:
        return {"sub": payload.sub}

    @app.post("/login")
    async def login(uid: str) -> dict[str, Any]:
        return {"access_token": auth.create_access_token(uid=uid, fresh=True)}

    @app.websocket("/ws")
    async def ws(websocket: WebSocket, payload: Annotated[TokenPayload, auth.WS_AUTH_REQUIRED]) -> None:
        await websocket.accept()
        await websocket.send_json({"sub": payload.sub})
        await websocket.close()


def build_app(store: Optional[StoreSpec], *, auth_config: Optional[dict[str, Any]] = None, **install: Any) -> Harness:
    """A FastAPI app with AuthX's error handlers and every route; authx-epoch installed unless ``store`` is None."""
    app = FastAPI()
    auth = make_auth(**(auth_config or {}))
    auth.handle_errors(app)
    revocation = None
    if store is not None:
        revocation = authx_epoch.install(auth, store=store, app=app, **install)
    add_routes(app, auth)
    return Harness(app=app, auth=auth, revocation=revocation)


@asynccontextmanager
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client talking to ``app`` in process through the ASGI transport."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as c:
        yield c


def bearer(token: str) -> dict[str, str]:
    """The header that carries ``token``."""
    return {"Authorization": f"Bearer {token}"}


def claims_of(token: str) -> dict[str, Any]:
    """The token's payload, without verifying it (the test minted it)."""
    payload: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return payload


def forge(
    sub: Any = "alice",
    *,
    key: str = SECRET,
    iat: Optional[float] = None,
    exp: Optional[float] = None,
    drop: tuple[str, ...] = (),
    **extra: Any,
) -> str:
    """A token signed with ``key`` with exactly the claims given (AuthX's shape, an access token).

    ``iat`` defaults to now and ``exp`` to fifteen minutes later; ``drop`` removes claims.
    """
    issued = int(time.time()) if iat is None else iat
    payload: dict[str, Any] = {
        "sub": sub,
        "jti": extra.pop("jti", f"jti-{time.perf_counter_ns()}"),
        "type": "access",
        "fresh": False,
        "csrf": "",
        "iat": issued,
        "exp": (time.time() + 900) if exp is None else exp,
    }
    payload.update(extra)
    for name in drop:
        payload.pop(name, None)
    return jwt.encode(payload, key, algorithm=ALGORITHM)


def raw_token(payload: object, header: Optional[dict[str, Any]] = None, signature: str = "c2ln") -> str:
    """A compact token whose payload segment is the JSON of ``payload`` (any JSON value), unsigned."""

    def segment(value: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{segment(header or {'alg': 'HS256', 'typ': 'JWT'})}.{segment(payload)}.{signature}"


def aware(timestamp: float) -> dt.datetime:
    """An aware UTC datetime at ``timestamp``."""
    return dt.datetime.fromtimestamp(timestamp, tz=dt.timezone.utc)

"""Failure modes: an unreachable store is a 503 in AuthX's error shape."""

import asyncio
import os
import pathlib
import tempfile

import httpx
from authx import AuthX, AuthXConfig, TokenPayload
from fastapi import Depends, FastAPI

import authx_epoch

database = pathlib.Path(tempfile.mkdtemp(), "revocation.db")


def build_app(*, fail_open: bool) -> tuple[FastAPI, AuthX]:
    app = FastAPI()
    auth = AuthX(
        config=AuthXConfig(JWT_SECRET_KEY="change-me-to-a-long-random-secret!")
    )
    auth.handle_errors(app)
    # app= registers the 503 handler; fail_open=False is the default.
    # (Both apps of this example share one file on purpose: namespace="".)
    authx_epoch.install(
        auth,
        store=f"sqlite:///{database}",
        app=app,
        fail_open=fail_open,
        namespace="",
    )

    @app.get("/me")
    async def me(
        payload: TokenPayload = Depends(auth.access_token_required),
    ) -> dict[str, str]:
        return {"uid": str(payload.sub)}

    return app, auth


def break_the_store() -> None:
    """Put a directory where the file was: every read fails (a lost disk)."""
    for suffix in ("", "-wal", "-shm"):
        pathlib.Path(f"{database}{suffix}").unlink(missing_ok=True)
    os.mkdir(database)


async def get_me(app: FastAPI, token: str) -> httpx.Response:
    asgi = httpx.ASGITransport(app=app)  # calls the app in-process, no server
    async with httpx.AsyncClient(base_url="http://app", transport=asgi) as http:
        return await http.get(
            "/me", headers={"Authorization": f"Bearer {token}"}
        )


async def main() -> None:
    closed_app, closed_auth = build_app(fail_open=False)
    open_app, open_auth = build_app(fail_open=True)
    token = closed_auth.create_access_token(uid="alice")
    other = open_auth.create_access_token(uid="alice")
    break_the_store()

    response = await get_me(closed_app, token)  # fail-closed, the default
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
    assert response.json() == {
        "message": "Token revocation service unavailable, try again shortly",
        "error_type": "StoreUnavailableError",
    }

    response = await get_me(open_app, other)  # fail_open=True
    assert response.status_code == 200  # unchecked, and logged as a warning


if __name__ == "__main__":
    asyncio.run(main())

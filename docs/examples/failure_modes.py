"""Failure modes: an unreachable store is a 503 in AuthX's error shape, never a 500, never "revoked"."""

import asyncio
import logging
import os
import tempfile
from pathlib import Path

import httpx
from authx import AuthX, AuthXConfig, TokenPayload
from fastapi import Depends, FastAPI

import authx_epoch

workdir = Path(tempfile.mkdtemp())


def build(*, fail_open: bool) -> tuple[FastAPI, AuthX]:
    # --8<-- [start:app]
    app = FastAPI()
    auth = AuthX(
        config=AuthXConfig(JWT_SECRET_KEY="change-me-to-a-long-random-secret!", JWT_TOKEN_LOCATION=["headers"])
    )
    auth.handle_errors(app)
    # app= registers the 503 handler; fail_open=False is the default.
    authx_epoch.install(auth, store=f"sqlite:///{workdir / 'revocation.db'}", app=app, fail_open=fail_open)

    @app.get("/me")
    async def me(payload: TokenPayload = Depends(auth.access_token_required)) -> dict[str, str]:
        return {"uid": str(payload.sub)}

    # --8<-- [end:app]

    return app, auth


def break_the_store() -> None:
    """Replace the database file by a directory: every read now fails, as on a lost disk."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{workdir / 'revocation.db'}{suffix}").unlink(missing_ok=True)
    os.mkdir(workdir / "revocation.db")


async def main() -> None:
    closed, closed_auth = build(fail_open=False)
    open_app, open_auth = build(fail_open=True)
    token, other = closed_auth.create_access_token(uid="alice"), open_auth.create_access_token(uid="alice")
    break_the_store()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=closed), base_url="http://app") as client:
        # --8<-- [start:closed]
        response = await client.get("/me", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 503
        assert response.json() == {
            "message": "Token revocation service unavailable, try again shortly",
            "error_type": "StoreUnavailableError",
        }
        assert response.headers["Retry-After"] == "1"
        # --8<-- [end:closed]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=open_app), base_url="http://app") as client:
        # --8<-- [start:open]
        response = await client.get("/me", headers={"Authorization": f"Bearer {other}"})
        assert response.status_code == 200  # let through unchecked, and logged as a warning each time
        # --8<-- [end:open]


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(main())

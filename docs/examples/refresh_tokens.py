"""Refresh tokens: stamped like access tokens, tied to a session, rotated by revoking the old one."""

import asyncio
import uuid

import httpx
from authx import AuthX, AuthXConfig, TokenPayload
from fastapi import Depends, FastAPI

import authx_epoch

app = FastAPI()
auth = AuthX(config=AuthXConfig(JWT_SECRET_KEY="change-me-to-a-long-random-secret!", JWT_TOKEN_LOCATION=["headers"]))
auth.handle_errors(app)
revocation = authx_epoch.install(auth, store="memory://", app=app)


@app.get("/me")
async def me(payload: TokenPayload = Depends(auth.access_token_required)) -> dict[str, str]:
    return {"uid": str(payload.sub)}


# --8<-- [start:routes]
@app.post("/login")
async def login() -> dict[str, str]:
    data = {"session_id": str(uuid.uuid4())}  # one session per login: access and refresh share it
    return {
        "access_token": auth.create_access_token(uid="alice", fresh=True, data=data),
        "refresh_token": auth.create_refresh_token(uid="alice", data=data),
    }


@app.post("/refresh")
async def refresh(payload: TokenPayload = Depends(auth.refresh_token_required)) -> dict[str, str]:
    data = {"session_id": (payload.model_extra or {})["session_id"]}  # stay in the same session
    await revocation.revoke_token(payload)  # rotation: the presented refresh token is spent
    return {
        "access_token": auth.create_access_token(uid=str(payload.sub), data=data),
        "refresh_token": auth.create_refresh_token(uid=str(payload.sub), data=data),
    }


# --8<-- [end:routes]


async def main() -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app") as client:
        # --8<-- [start:walk]
        first = (await client.post("/login")).json()
        second = await client.post("/refresh", headers={"Authorization": f"Bearer {first['refresh_token']}"})
        assert second.status_code == 200
        replay = await client.post("/refresh", headers={"Authorization": f"Bearer {first['refresh_token']}"})
        assert replay.status_code == 401  # a spent refresh token is refused
        await revocation.bump_user_epoch("alice", reason="logout_all")  # and logout-all reaches refresh tokens
        again = await client.post("/refresh", headers={"Authorization": f"Bearer {second.json()['refresh_token']}"})
        assert again.status_code == 401
        # --8<-- [end:walk]


if __name__ == "__main__":
    asyncio.run(main())

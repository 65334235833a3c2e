"""Low-level alternative: rotate refresh tokens by hand with revoke_token.

Prefer create_token_pair and rotated_tokens (refresh_tokens.py): this
version refuses a spent refresh token, but it cannot tell a replay from a
mistake, so it never revokes the session a thief is using.
"""

import asyncio
import uuid

import httpx
from authx import AuthX, AuthXConfig, TokenPayload
from fastapi import Depends, FastAPI

import authx_epoch

app = FastAPI()
auth = AuthX(
    config=AuthXConfig(JWT_SECRET_KEY="change-me-to-a-long-random-secret!")
)
auth.handle_errors(app)
revocation = authx_epoch.install(auth, store="memory://", app=app)


def new_pair(uid: str, session_id: str, fresh: bool = False) -> dict[str, str]:
    data = {"session_id": session_id}  # both tokens carry the login's id
    return {
        "access_token": auth.create_access_token(uid, fresh=fresh, data=data),
        "refresh_token": auth.create_refresh_token(uid, data=data),
    }


@app.post("/login")
async def login() -> dict[str, str]:  # check the password first, of course
    return new_pair("alice", session_id=str(uuid.uuid4()), fresh=True)


@app.post("/refresh")
async def refresh(
    payload: TokenPayload = Depends(auth.refresh_token_required),
) -> dict[str, str]:
    session_id = (payload.model_extra or {})["session_id"]
    await revocation.revoke_token(payload)  # this refresh token is spent
    return new_pair(str(payload.sub), session_id)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def main() -> None:
    asgi = httpx.ASGITransport(app=app)  # calls the app in-process, no server
    async with httpx.AsyncClient(base_url="http://app", transport=asgi) as http:
        first = (await http.post("/login")).json()
        second = await http.post(
            "/refresh", headers=bearer(first["refresh_token"])
        )
        assert second.status_code == 200
        replay = await http.post(
            "/refresh", headers=bearer(first["refresh_token"])
        )
        assert replay.status_code == 401  # a spent refresh token is refused...
        again = await http.post(
            "/refresh", headers=bearer(second.json()["refresh_token"])
        )
        assert again.status_code == 200  # ...but the session lives on


if __name__ == "__main__":
    asyncio.run(main())

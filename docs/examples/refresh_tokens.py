"""Refresh tokens: a session per login, rotated at each use, replays caught."""

import asyncio

import httpx
from authx import AuthX, AuthXConfig, TokenPayload
from fastapi import Depends, FastAPI, Request

import authx_epoch

app = FastAPI()
auth = AuthX(
    config=AuthXConfig(JWT_SECRET_KEY="change-me-to-a-long-random-secret!")
)
auth.handle_errors(app)
revocation = authx_epoch.install(auth, store="memory://", app=app)


@app.post("/login")
async def login(request: Request) -> authx_epoch.SessionTokens:
    # (Check the password first.) A new session: both tokens carry its id.
    return await revocation.create_token_pair(
        "alice", fresh=True, request=request
    )


@app.post("/refresh")
async def refresh(
    tokens: authx_epoch.SessionTokens = Depends(revocation.rotated_tokens),
) -> authx_epoch.SessionTokens:
    # The session's next pair, for the refresh token read and verified where
    # AuthX reads it (cookies too, CSRF included, new cookies set). A refresh
    # token already used is a replay: the session is revoked and the answer
    # is a 401 RefreshTokenReusedError.
    return tokens


@app.get("/me")
async def me(
    payload: TokenPayload = Depends(auth.access_token_required),
) -> dict[str, str]:
    return {"uid": str(payload.sub)}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def main() -> None:
    asgi = httpx.ASGITransport(app=app)  # calls the app in-process, no server
    async with httpx.AsyncClient(base_url="http://app", transport=asgi) as http:
        first = (await http.post("/login")).json()
        second = (
            await http.post("/refresh", headers=bearer(first["refresh_token"]))
        ).json()
        third = (
            await http.post("/refresh", headers=bearer(second["refresh_token"]))
        ).json()
        sessions = {pair["session_id"] for pair in (first, second, third)}
        assert len(sessions) == 1  # one session, whatever the rotations

        # A thief replays the first refresh token: the whole session dies.
        replay = await http.post(
            "/refresh", headers=bearer(first["refresh_token"])
        )
        assert replay.json()["error_type"] == "RefreshTokenReusedError"
        response = await http.get("/me", headers=bearer(third["access_token"]))
        assert response.status_code == 401

        # Logout everywhere reaches refresh tokens too: they are stamped.
        other = (await http.post("/login")).json()
        await revocation.bump_user_epoch("alice", reason="logout_all")
        response = await http.post(
            "/refresh", headers=bearer(other["refresh_token"])
        )
        assert response.status_code == 401


if __name__ == "__main__":
    asyncio.run(main())

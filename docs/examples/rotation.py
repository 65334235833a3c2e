"""Sessions done right: one pair per login, per-device logout, refresh-token rotation with reuse detection."""

import asyncio
import datetime as dt
import time

import httpx
from authx import AuthX, AuthXConfig, TokenPayload
from fastapi import Depends, FastAPI, Request

import authx_epoch


class Clock:
    """The service's clock, moved by hand here to show the grace interval without waiting."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


clock = Clock()
app = FastAPI()
auth = AuthX(config=AuthXConfig(JWT_SECRET_KEY="change-me-to-a-long-random-secret!", JWT_TOKEN_LOCATION=["headers"]))
auth.handle_errors(app)

# --8<-- [start:install]
revocation = authx_epoch.install(
    auth,
    store="memory://",
    app=app,
    refresh_reuse_grace=dt.timedelta(seconds=5),  # the default: two tabs refreshing at once are fine
    clock=clock,
)
# --8<-- [end:install]


# --8<-- [start:routes]
@app.post("/login")
async def login(request: Request) -> authx_epoch.SessionTokens:
    # (check the password first) A new session: both tokens carry its id and its generation.
    return await revocation.create_token_pair("alice", fresh=True, request=request)


@app.post("/refresh")
async def refresh(request: Request) -> authx_epoch.SessionTokens:
    # Not auth.refresh_token_required: rotate_refresh_token verifies the token itself, like AuthX.
    token = request.headers.get("Authorization", "").removeprefix("Bearer ")
    return await revocation.rotate_refresh_token(token)  # a replay raises RefreshTokenReusedError: 401


@app.post("/logout")
async def logout(payload: TokenPayload = Depends(auth.access_token_required)) -> dict[str, str]:
    await revocation.revoke_session((payload.model_extra or {})["session_id"])  # this device only
    return {"message": "this device is logged out"}


@app.get("/me")
async def me(payload: TokenPayload = Depends(auth.access_token_required)) -> dict[str, str]:
    return {"uid": str(payload.sub)}


# --8<-- [end:routes]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def main() -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app") as client:
        # --8<-- [start:walk]
        laptop, phone = (await client.post("/login")).json(), (await client.post("/login")).json()
        assert laptop["session_id"] != phone["session_id"]

        # Two tabs refresh with the same token at once: both get a working pair.
        first, second = await asyncio.gather(
            client.post("/refresh", headers=bearer(laptop["refresh_token"])),
            client.post("/refresh", headers=bearer(laptop["refresh_token"])),
        )
        assert first.status_code == second.status_code == 200
        current = first.json()

        # Later, someone replays the old refresh token: the whole laptop session is revoked.
        clock.now += 60
        replay = await client.post("/refresh", headers=bearer(laptop["refresh_token"]))
        assert replay.status_code == 401
        assert replay.json()["error_type"] == "RefreshTokenReusedError"
        assert (await client.get("/me", headers=bearer(current["access_token"]))).status_code == 401
        assert (await client.post("/refresh", headers=bearer(current["refresh_token"]))).status_code == 401

        # The phone is another session: untouched. Logging it out ends its access and refresh tokens.
        assert (await client.get("/me", headers=bearer(phone["access_token"]))).status_code == 200
        assert (await client.post("/logout", headers=bearer(phone["access_token"]))).status_code == 200
        assert (await client.post("/refresh", headers=bearer(phone["refresh_token"]))).status_code == 401
        # --8<-- [end:walk]
        stats = await revocation.stats()
        assert (stats.sessions, stats.revoked_sessions) == (2, 2)


if __name__ == "__main__":
    asyncio.run(main())

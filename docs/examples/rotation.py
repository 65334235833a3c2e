"""Sessions: a pair per login, logout per device, rotation, reuse detection."""

import asyncio
import datetime as dt
import time

import httpx
from authx import AuthX, AuthXConfig, TokenPayload
from fastapi import Depends, FastAPI, Request

import authx_epoch


class Clock:
    """The service's clock, moved by hand to show the grace interval."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


clock = Clock()  # an app leaves clock= out: the wall clock
app = FastAPI()
auth = AuthX(
    config=AuthXConfig(JWT_SECRET_KEY="change-me-to-a-long-random-secret!")
)
auth.handle_errors(app)
revocation = authx_epoch.install(
    auth,
    store="memory://",
    app=app,
    # The default: two tabs refreshing with the same token at once are fine.
    refresh_reuse_grace=dt.timedelta(seconds=5),
    clock=clock,
)


@app.post("/login")
async def login(request: Request) -> authx_epoch.SessionTokens:
    # (Check the password first.) A new session: both tokens carry its id
    # and its generation.
    return await revocation.create_token_pair(
        "alice", fresh=True, request=request
    )


@app.post("/refresh")
async def refresh(
    tokens: authx_epoch.SessionTokens = Depends(revocation.rotated_tokens),
) -> authx_epoch.SessionTokens:
    # Verified like AuthX's refresh_token_required, then rotated; a replay
    # is a 401 RefreshTokenReusedError.
    return tokens


@app.post("/logout")
async def logout(
    session_id: str = Depends(revocation.current_session),
) -> dict[str, str]:
    await revocation.revoke_session(session_id)  # this device only
    return {"message": "this device is logged out"}


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
        laptop = (await http.post("/login")).json()
        phone = (await http.post("/login")).json()
        assert laptop["session_id"] != phone["session_id"]

        # Two tabs refresh with the same token at once: both get a pair.
        used = bearer(laptop["refresh_token"])
        first, second = await asyncio.gather(
            http.post("/refresh", headers=used),
            http.post("/refresh", headers=used),
        )
        assert first.status_code == second.status_code == 200
        current = first.json()

        # A minute later someone replays the used refresh token: the whole
        # laptop session is revoked, the pair it was rotated into too.
        clock.now += 60
        replay = await http.post("/refresh", headers=used)
        assert replay.status_code == 401
        assert replay.json()["error_type"] == "RefreshTokenReusedError"
        response = await http.get(
            "/me", headers=bearer(current["access_token"])
        )
        assert response.status_code == 401
        response = await http.post(
            "/refresh", headers=bearer(current["refresh_token"])
        )
        assert response.status_code == 401

        # The phone is another session, untouched; logging it out ends its
        # access and refresh tokens together.
        phone_access = bearer(phone["access_token"])
        assert (await http.get("/me", headers=phone_access)).status_code == 200
        await http.post("/logout", headers=phone_access)
        response = await http.post(
            "/refresh", headers=bearer(phone["refresh_token"])
        )
        assert response.status_code == 401

    stats = await revocation.stats()
    assert (stats.sessions, stats.revoked_sessions) == (2, 2)


if __name__ == "__main__":
    asyncio.run(main())

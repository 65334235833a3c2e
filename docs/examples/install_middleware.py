"""install() first, then AuthX's implicit-refresh middleware (checked)."""

import asyncio
import datetime as dt

import httpx
from authx import AuthX, AuthXConfig, TokenPayload
from fastapi import Depends, FastAPI

import authx_epoch

app = FastAPI()
auth = AuthX(
    config=AuthXConfig(
        JWT_SECRET_KEY="change-me-to-a-long-random-secret!",
        JWT_TOKEN_LOCATION=["cookies"],
    )
)
auth.handle_errors(app)
revocation = authx_epoch.install(auth, store="memory://", app=app)  # first...
app.middleware("http")(auth.implicit_refresh_middleware)  # ...then this


@app.get("/me")
async def me(
    payload: TokenPayload = Depends(auth.access_token_required),
) -> dict[str, str]:
    return {"uid": str(payload.sub)}


async def main() -> None:
    # Closer to expiry than JWT_IMPLICIT_REFRESH_DELTATIME (10 minutes):
    # the middleware re-mints such a cookie.
    five_minutes = dt.timedelta(minutes=5)
    kept = auth.create_access_token(uid="alice", expiry=five_minutes)
    revoked = auth.create_access_token(uid="alice", expiry=five_minutes)
    await revocation.revoke_token(revoked)

    asgi = httpx.ASGITransport(app=app)  # calls the app in-process, no server
    async with httpx.AsyncClient(base_url="http://app", transport=asgi) as http:
        cookie = {"Cookie": f"access_token_cookie={kept}"}
        response = await http.get("/me", headers=cookie)
        assert response.status_code == 200
        assert "access_token_cookie" in response.headers["set-cookie"]

        cookie = {"Cookie": f"access_token_cookie={revoked}"}
        response = await http.get("/me", headers=cookie)
        assert response.status_code == 401
        assert "set-cookie" not in response.headers  # never laundered


if __name__ == "__main__":
    asyncio.run(main())

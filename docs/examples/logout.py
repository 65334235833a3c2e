"""Logout: revoke the presented token only, by its jti, until it expires."""

import asyncio

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


@app.post("/logout")
async def logout(
    payload: TokenPayload = Depends(auth.access_token_required),
) -> dict[str, str]:
    # The payload AuthX verified: its jti is kept until the token's exp
    # (plus a leeway), then forgotten.
    await revocation.revoke_token(payload)
    return {"message": "this token is revoked"}


@app.get("/me")
async def me(
    payload: TokenPayload = Depends(auth.access_token_required),
) -> dict[str, str]:
    return {"uid": str(payload.sub)}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def main() -> None:
    laptop = auth.create_access_token(uid="alice")
    phone = auth.create_access_token(uid="alice")
    asgi = httpx.ASGITransport(app=app)  # calls the app in-process, no server
    async with httpx.AsyncClient(base_url="http://app", transport=asgi) as http:
        response = await http.post("/logout", headers=bearer(laptop))
        assert response.status_code == 200
        response = await http.get("/me", headers=bearer(laptop))
        assert response.status_code == 401  # this token is refused...
        response = await http.get("/me", headers=bearer(phone))
        assert response.status_code == 200  # ...the user's others still work
    decision = await revocation.check(laptop)
    assert decision.reason is authx_epoch.Reason.TOKEN_REVOKED


if __name__ == "__main__":
    asyncio.run(main())

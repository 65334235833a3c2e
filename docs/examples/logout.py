"""Logout: revoke the presented token only, by its jti, until it expires."""

import asyncio

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


# --8<-- [start:route]
@app.post("/logout")
async def logout(payload: TokenPayload = Depends(auth.access_token_required)) -> dict[str, str]:
    # The verified payload from AuthX: its jti is kept until the token's exp (plus a leeway).
    await revocation.revoke_token(payload)
    return {"message": "this token is revoked"}


# --8<-- [end:route]


async def main() -> None:
    laptop, phone = auth.create_access_token(uid="alice"), auth.create_access_token(uid="alice")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app") as client:
        # --8<-- [start:walk]
        assert (await client.post("/logout", headers={"Authorization": f"Bearer {laptop}"})).status_code == 200
        assert (await client.get("/me", headers={"Authorization": f"Bearer {laptop}"})).status_code == 401
        assert (await client.get("/me", headers={"Authorization": f"Bearer {phone}"})).status_code == 200
        # --8<-- [end:walk]
    assert (await revocation.check(laptop)).reason is authx_epoch.Reason.TOKEN_REVOKED


if __name__ == "__main__":
    asyncio.run(main())

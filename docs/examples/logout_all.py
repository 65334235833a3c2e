"""Logout everywhere: one epoch bump revokes every token the user holds."""

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
@app.post("/logout-all")
async def logout_all(payload: TokenPayload = Depends(auth.access_token_required)) -> dict[str, object]:
    record = await revocation.bump_user_epoch(str(payload.sub), reason="logout_all")
    # The record is the audit trail: the new epoch, when and why it moved.
    return {"epoch": record.epoch, "reason": record.reason}


# --8<-- [end:route]


async def main() -> None:
    tokens = [auth.create_access_token(uid="alice") for _ in range(3)]  # three devices
    refresh = auth.create_refresh_token(uid="alice")
    bob = auth.create_access_token(uid="bob")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app") as client:
        response = await client.post("/logout-all", headers={"Authorization": f"Bearer {tokens[0]}"})
        assert response.json()["reason"] == "logout_all"
        for token in tokens:
            assert (await client.get("/me", headers={"Authorization": f"Bearer {token}"})).status_code == 401
        assert (await client.get("/me", headers={"Authorization": f"Bearer {bob}"})).status_code == 200
    # --8<-- [start:check]
    decision = await revocation.check(refresh)  # refresh tokens are stamped too
    assert not decision.accepted
    assert decision.reason is authx_epoch.Reason.USER_EPOCH
    # --8<-- [end:check]
    assert (await revocation.stats()).revoked_tokens == 0  # nothing per token was stored


if __name__ == "__main__":
    asyncio.run(main())

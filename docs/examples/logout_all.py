"""Logout everywhere: one epoch bump revokes every token the user holds."""

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


@app.post("/logout-all")
async def logout_all(
    payload: TokenPayload = Depends(auth.access_token_required),
) -> dict[str, object]:
    uid = str(payload.sub)
    record = await revocation.bump_user_epoch(uid, reason="logout_all")
    # The record is the audit trail: the new epoch, when and why it moved.
    return {"epoch": record.epoch, "reason": record.reason}


@app.get("/me")
async def me(
    payload: TokenPayload = Depends(auth.access_token_required),
) -> dict[str, str]:
    return {"uid": str(payload.sub)}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def main() -> None:
    devices = [auth.create_access_token(uid="alice") for _ in range(3)]
    refresh = auth.create_refresh_token(uid="alice")
    bob = auth.create_access_token(uid="bob")
    asgi = httpx.ASGITransport(app=app)  # calls the app in-process, no server
    async with httpx.AsyncClient(base_url="http://app", transport=asgi) as http:
        response = await http.post("/logout-all", headers=bearer(devices[0]))
        assert response.json()["reason"] == "logout_all"
        for token in devices:  # every device of alice is logged out
            response = await http.get("/me", headers=bearer(token))
            assert response.status_code == 401
        response = await http.get("/me", headers=bearer(bob))
        assert response.status_code == 200  # other users are untouched

    decision = await revocation.check(refresh)  # refresh tokens are stamped too
    assert decision.reason is authx_epoch.Reason.USER_EPOCH
    stats = await revocation.stats()
    assert stats.revoked_tokens == 0  # nothing was stored per token


if __name__ == "__main__":
    asyncio.run(main())

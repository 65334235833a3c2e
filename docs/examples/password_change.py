"""Password change: require a fresh token, bump the epoch, hand back a new pair."""

import asyncio

import httpx
from authx import AuthX, AuthXConfig, TokenPayload
from fastapi import Depends, FastAPI, HTTPException
from pydantic import BaseModel

import authx_epoch

app = FastAPI()
auth = AuthX(config=AuthXConfig(JWT_SECRET_KEY="change-me-to-a-long-random-secret!", JWT_TOKEN_LOCATION=["headers"]))
auth.handle_errors(app)
revocation = authx_epoch.install(auth, store="memory://", app=app)
passwords = {"alice": "wonderland"}  # use a real password hash in a real app


class PasswordChange(BaseModel):
    current_password: str
    new_password: str


@app.get("/me")
async def me(payload: TokenPayload = Depends(auth.access_token_required)) -> dict[str, str]:
    return {"uid": str(payload.sub)}


# --8<-- [start:route]
@app.post("/change-password")
async def change_password(
    change: PasswordChange, payload: TokenPayload = Depends(auth.fresh_token_required)
) -> dict[str, str]:
    uid = str(payload.sub)
    if passwords.get(uid) != change.current_password:
        raise HTTPException(status_code=403, detail="the current password is wrong")
    passwords[uid] = change.new_password
    await revocation.bump_user_epoch(uid, reason="password_change")  # every older token dies
    # Minted after the bump, so stamped with the new epoch: this pair keeps the user logged in.
    return {
        "access_token": auth.create_access_token(uid=uid, fresh=True),
        "refresh_token": auth.create_refresh_token(uid=uid),
    }


# --8<-- [end:route]


async def main() -> None:
    fresh = auth.create_access_token(uid="alice", fresh=True)
    stale = auth.create_access_token(uid="alice")  # e.g. minted by /refresh
    body = {"current_password": "wonderland", "new_password": "looking-glass"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app") as client:
        # --8<-- [start:walk]
        refused = await client.post("/change-password", json=body, headers={"Authorization": f"Bearer {stale}"})
        assert refused.status_code == 401  # AuthX's FreshTokenRequiredError
        changed = await client.post("/change-password", json=body, headers={"Authorization": f"Bearer {fresh}"})
        assert changed.status_code == 200
        for old in (fresh, stale):
            assert (await client.get("/me", headers={"Authorization": f"Bearer {old}"})).status_code == 401
        new = changed.json()["access_token"]
        assert (await client.get("/me", headers={"Authorization": f"Bearer {new}"})).status_code == 200
        # --8<-- [end:walk]
        assert refused.json()["error_type"] == "FreshTokenRequiredError"
    record = await revocation.get_user_record("alice")
    assert record is not None and record.reason == "password_change"


if __name__ == "__main__":
    asyncio.run(main())

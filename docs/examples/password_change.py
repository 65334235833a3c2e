"""Password change: a fresh token, an epoch bump, then a new pair."""

import asyncio

import httpx
from authx import AuthX, AuthXConfig, TokenPayload
from fastapi import Depends, FastAPI, HTTPException
from pydantic import BaseModel

import authx_epoch

app = FastAPI()
auth = AuthX(
    config=AuthXConfig(JWT_SECRET_KEY="change-me-to-a-long-random-secret!")
)
auth.handle_errors(app)
revocation = authx_epoch.install(auth, store="memory://", app=app)
passwords = {"alice": "wonderland"}  # a real app keeps password hashes


class PasswordChange(BaseModel):
    current_password: str
    new_password: str


@app.post("/change-password")
async def change_password(
    change: PasswordChange,
    payload: TokenPayload = Depends(auth.fresh_token_required),
) -> dict[str, str]:
    uid = str(payload.sub)
    if passwords.get(uid) != change.current_password:
        raise HTTPException(403, detail="the current password is wrong")
    passwords[uid] = change.new_password
    # Bump first: every token minted before now dies, this one included.
    await revocation.bump_user_epoch(uid, reason="password_change")
    # Then mint: stamped with the new epoch, this pair keeps the user in.
    return {
        "access_token": auth.create_access_token(uid=uid, fresh=True),
        "refresh_token": auth.create_refresh_token(uid=uid),
    }


@app.get("/me")
async def me(
    payload: TokenPayload = Depends(auth.access_token_required),
) -> dict[str, str]:
    return {"uid": str(payload.sub)}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def main() -> None:
    fresh = auth.create_access_token(uid="alice", fresh=True)  # from a login
    stale = auth.create_access_token(uid="alice")  # e.g. from a refresh
    body = {"current_password": "wonderland", "new_password": "looking-glass"}
    asgi = httpx.ASGITransport(app=app)  # calls the app in-process, no server
    async with httpx.AsyncClient(base_url="http://app", transport=asgi) as http:
        refused = await http.post(
            "/change-password", json=body, headers=bearer(stale)
        )
        assert refused.status_code == 401
        assert refused.json()["error_type"] == "FreshTokenRequiredError"

        changed = await http.post(
            "/change-password", json=body, headers=bearer(fresh)
        )
        assert changed.status_code == 200
        for old in (fresh, stale):  # every token from before is refused
            response = await http.get("/me", headers=bearer(old))
            assert response.status_code == 401
        new = changed.json()["access_token"]
        response = await http.get("/me", headers=bearer(new))
        assert response.status_code == 200  # the new pair works

    record = await revocation.get_user_record("alice")
    assert record is not None and record.reason == "password_change"


if __name__ == "__main__":
    asyncio.run(main())

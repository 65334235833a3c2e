"""Quick start: install authx-epoch on an AuthX app, log in, log out everywhere."""

import asyncio

import httpx

# --8<-- [start:app]
from authx import AuthX, AuthXConfig, TokenPayload
from fastapi import Depends, FastAPI

import authx_epoch

app = FastAPI()
auth = AuthX(config=AuthXConfig(JWT_SECRET_KEY="change-me-to-a-long-random-secret!", JWT_TOKEN_LOCATION=["headers"]))
auth.handle_errors(app)
revocation = authx_epoch.install(auth, store="sqlite:///revocation.db", app=app)  # before any middleware


@app.post("/login")
async def login() -> dict[str, str]:  # check the password first, of course
    return {"access_token": auth.create_access_token(uid="alice", fresh=True)}


@app.get("/me")
async def me(payload: TokenPayload = Depends(auth.access_token_required)) -> dict[str, str]:
    return {"uid": str(payload.sub)}


@app.post("/logout-all")
async def logout_all(payload: TokenPayload = Depends(auth.access_token_required)) -> dict[str, str]:
    await revocation.bump_user_epoch(str(payload.sub), reason="logout_all")  # one write, every token
    return {"message": "logged out everywhere"}


# --8<-- [end:app]


async def main() -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app") as client:
        # --8<-- [start:walk]
        laptop = (await client.post("/login")).json()["access_token"]
        phone = (await client.post("/login")).json()["access_token"]
        headers = {"Authorization": f"Bearer {laptop}"}
        assert (await client.get("/me", headers=headers)).status_code == 200
        assert (await client.post("/logout-all", headers=headers)).status_code == 200
        for token in (laptop, phone):  # both devices are logged out
            response = await client.get("/me", headers={"Authorization": f"Bearer {token}"})
            assert response.status_code == 401
            assert response.json()["error_type"] == "RevokedTokenError"
        fresh = (await client.post("/login")).json()["access_token"]  # a new login works at once
        assert (await client.get("/me", headers={"Authorization": f"Bearer {fresh}"})).status_code == 200
        # --8<-- [end:walk]


if __name__ == "__main__":
    asyncio.run(main())

"""Quick start: install authx-epoch, log in twice, log out everywhere."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from authx import AuthX, AuthXConfig, TokenPayload
from fastapi import Depends, FastAPI, Response

import authx_epoch


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    yield
    await revocation.aclose()  # at shutdown: the store's connections


app = FastAPI(lifespan=lifespan)
auth = AuthX(
    config=AuthXConfig(JWT_SECRET_KEY="change-me-to-a-long-random-secret!")
)
auth.handle_errors(app)
# Right after creating auth, before any middleware:
revocation = authx_epoch.install(
    auth, store="sqlite:///authx-epoch.db", app=app
)


@app.post("/login")
async def login() -> dict[str, str]:  # check the password first, of course
    return {"access_token": auth.create_access_token(uid="alice", fresh=True)}


@app.get("/me")
async def me(
    payload: TokenPayload = Depends(auth.access_token_required),
) -> dict[str, str]:
    return {"uid": str(payload.sub)}


@app.post("/logout-all")
async def logout_all(
    payload: TokenPayload = Depends(auth.access_token_required),
) -> dict[str, str]:
    # One write: every token of this user minted before now is refused.
    await revocation.bump_user_epoch(str(payload.sub), reason="logout_all")
    return {"message": "logged out everywhere"}


@app.get("/ready")  # the orchestrator's readiness probe
async def ready(response: Response) -> dict[str, bool]:
    answers = await revocation.ready()  # False while the store is unreachable
    response.status_code = 200 if answers else 503
    return {"ready": answers}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def main() -> None:
    asgi = httpx.ASGITransport(app=app)  # calls the app in-process, no server
    async with httpx.AsyncClient(base_url="http://app", transport=asgi) as http:
        assert (await http.get("/ready")).json() == {"ready": True}
        laptop = (await http.post("/login")).json()["access_token"]
        phone = (await http.post("/login")).json()["access_token"]
        response = await http.get("/me", headers=bearer(laptop))
        assert response.status_code == 200

        await http.post("/logout-all", headers=bearer(laptop))
        for token in (laptop, phone):  # both devices are logged out
            response = await http.get("/me", headers=bearer(token))
            assert response.status_code == 401
            assert response.json()["error_type"] == "RevokedTokenError"

        fresh = (await http.post("/login")).json()["access_token"]
        response = await http.get("/me", headers=bearer(fresh))
        assert response.status_code == 200  # a new login works at once


if __name__ == "__main__":
    asyncio.run(main())

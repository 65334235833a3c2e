"""Sessions: AuthX's session API, with revocation that really reaches the tokens."""

import asyncio

import httpx
from authx import AuthX, AuthXConfig, SessionInfo, TokenPayload
from fastapi import Depends, FastAPI, Request

import authx_epoch


class SessionStore:
    """A dictionary implementing AuthX's SessionStoreProtocol (use your database in production)."""

    def __init__(self) -> None:
        self.sessions: dict[str, SessionInfo] = {}

    async def create(self, session: SessionInfo) -> None:
        self.sessions[session.session_id] = session

    async def get(self, session_id: str) -> SessionInfo | None:
        return self.sessions.get(session_id)

    async def update(self, session_id: str, **changes: object) -> None:
        self.sessions[session_id] = self.sessions[session_id].model_copy(update=changes)

    async def delete(self, session_id: str) -> None:
        self.sessions.pop(session_id, None)

    async def list_by_user(self, uid: str) -> list[SessionInfo]:
        return [session for session in self.sessions.values() if session.uid == uid]

    async def delete_all_by_user(self, uid: str) -> None:
        for session in await self.list_by_user(uid):
            del self.sessions[session.session_id]


app = FastAPI()
auth = AuthX(config=AuthXConfig(JWT_SECRET_KEY="change-me-to-a-long-random-secret!", JWT_TOKEN_LOCATION=["headers"]))
auth.handle_errors(app)
auth.set_session_store(SessionStore())
revocation = authx_epoch.install(auth, store="memory://", app=app)


# --8<-- [start:routes]
@app.post("/login")
async def login(request: Request) -> dict[str, str]:
    session = await auth.create_session("alice", request)
    data = {"session_id": session.session_id}  # the claim authx-epoch reads (ClaimNames.session_id)
    return {
        "access_token": auth.create_access_token(uid="alice", data=data),
        "refresh_token": auth.create_refresh_token(uid="alice", data=data),
    }


@app.post("/logout-session")
async def logout_session(payload: TokenPayload = Depends(auth.access_token_required)) -> dict[str, str]:
    # With authx-epoch installed, AuthX's own revoke_session also revokes the session's tokens.
    await auth.revoke_session((payload.model_extra or {})["session_id"])
    return {"message": "this session is logged out"}


@app.get("/sessions")
async def sessions(payload: TokenPayload = Depends(auth.access_token_required)) -> list[SessionInfo]:
    return await auth.list_sessions(str(payload.sub))


# --8<-- [end:routes]


async def main() -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app") as client:
        laptop, phone = (await client.post("/login")).json(), (await client.post("/login")).json()
        # --8<-- [start:walk]
        headers = {"Authorization": f"Bearer {laptop['access_token']}"}
        assert (await client.post("/logout-session", headers=headers)).status_code == 200
        assert (await client.get("/sessions", headers=headers)).status_code == 401
        assert (await revocation.check(laptop["refresh_token"])).reason is authx_epoch.Reason.SESSION_REVOKED
        phone_headers = {"Authorization": f"Bearer {phone['access_token']}"}
        assert len((await client.get("/sessions", headers=phone_headers)).json()) == 1
        await auth.revoke_all_sessions("alice")  # every session record and, by an epoch bump, every token
        assert (await client.get("/sessions", headers=phone_headers)).status_code == 401
        # --8<-- [end:walk]


if __name__ == "__main__":
    asyncio.run(main())

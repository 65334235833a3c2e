"""AuthX's session API, with revocation that really reaches the tokens."""

import asyncio

import httpx
from authx import AuthX, AuthXConfig, SessionInfo, TokenPayload
from fastapi import Depends, FastAPI, Request

import authx_epoch


class SessionStore:
    """AuthX's SessionStoreProtocol over a dict (use your database instead)."""

    def __init__(self) -> None:
        self.sessions: dict[str, SessionInfo] = {}

    async def create(self, session: SessionInfo) -> None:
        self.sessions[session.session_id] = session

    async def get(self, session_id: str) -> SessionInfo | None:
        return self.sessions.get(session_id)

    async def update(self, session_id: str, **changes: object) -> None:
        session = self.sessions[session_id]
        self.sessions[session_id] = session.model_copy(update=changes)

    async def delete(self, session_id: str) -> None:
        self.sessions.pop(session_id, None)

    async def list_by_user(self, uid: str) -> list[SessionInfo]:
        return [s for s in self.sessions.values() if s.uid == uid]

    async def delete_all_by_user(self, uid: str) -> None:
        for session in await self.list_by_user(uid):
            del self.sessions[session.session_id]


app = FastAPI()
auth = AuthX(
    config=AuthXConfig(JWT_SECRET_KEY="change-me-to-a-long-random-secret!")
)
auth.handle_errors(app)
auth.set_session_store(SessionStore())
revocation = authx_epoch.install(auth, store="memory://", app=app)


@app.post("/login")
async def login(request: Request) -> authx_epoch.SessionTokens:
    # (Check the password first.) AuthX's store keeps the session too.
    return await revocation.create_token_pair(
        "alice", fresh=True, request=request
    )


@app.post("/logout-session")
async def logout_session(
    session_id: str = Depends(revocation.current_session),
) -> dict[str, str]:
    # With authx-epoch installed, AuthX's own revoke_session also revokes
    # every token of the session, the refresh token included.
    await auth.revoke_session(session_id)
    return {"message": "this session is logged out"}


@app.get("/sessions")
async def sessions(
    payload: TokenPayload = Depends(auth.access_token_required),
) -> list[SessionInfo]:
    return await auth.list_sessions(str(payload.sub))


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def main() -> None:
    asgi = httpx.ASGITransport(app=app)  # calls the app in-process, no server
    async with httpx.AsyncClient(base_url="http://app", transport=asgi) as http:
        laptop = (await http.post("/login")).json()
        phone = (await http.post("/login")).json()
        listed = await http.get(
            "/sessions", headers=bearer(phone["access_token"])
        )
        assert len(listed.json()) == 2  # one per login

        await http.post(
            "/logout-session", headers=bearer(laptop["access_token"])
        )
        response = await http.get(
            "/sessions", headers=bearer(laptop["access_token"])
        )
        assert response.status_code == 401
        decision = await revocation.check(laptop["refresh_token"])
        assert decision.reason is authx_epoch.Reason.SESSION_REVOKED
        listed = await http.get(
            "/sessions", headers=bearer(phone["access_token"])
        )
        assert len(listed.json()) == 1  # the phone is still logged in

        # Every session record and, by an epoch bump, every token of alice:
        await auth.revoke_all_sessions("alice")
        response = await http.get(
            "/sessions", headers=bearer(phone["access_token"])
        )
        assert response.status_code == 401


if __name__ == "__main__":
    asyncio.run(main())

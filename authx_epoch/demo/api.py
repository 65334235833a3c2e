"""The demo's API: AuthX's token-revocation scenarios as routes, with the browser page mounted at ``/browser``."""

# No "from __future__ import annotations": FastAPI must see the dependency aliases defined inside
# create_app(), which string annotations would hide from it.
import os
import secrets
import sys
from typing import Annotated, Any, Optional

from authx import AuthX, AuthXConfig, SessionInfo, TokenPayload
from fastapi import Depends, FastAPI, HTTPException, Request

from authx_epoch.checking import Clock, wall_clock
from authx_epoch.demo.browser import BROWSER_PATH, create_browser_app
from authx_epoch.demo.models import Credentials, Me, Message, PasswordChange, TokenPair, session_of
from authx_epoch.demo.users import SessionStore, UserTable
from authx_epoch.integrations.authx import DEFAULT_STORE, install
from authx_epoch.revocation import EpochRevocation

#: The environment variable holding the demo's JWT secret.
SECRET_ENV = "AUTHX_EPOCH_DEMO_SECRET"


def _secret() -> str:
    configured = os.environ.get(SECRET_ENV)
    if configured:
        return configured
    print(
        f"authx-epoch demo: {SECRET_ENV} is not set; using a random JWT secret, so tokens end with this process",
        file=sys.stderr,
    )
    return secrets.token_urlsafe(32)


def create_app(store: str = DEFAULT_STORE, *, secret: Optional[str] = None, clock: Clock = wall_clock) -> FastAPI:
    """Build the demo app over ``store``.

    Args:
        store: The revocation store URL; by default a SQLite file in the working directory.
        secret: The JWT secret; by default ``AUTHX_EPOCH_DEMO_SECRET`` or a random one.
        clock: The revocation service's clock (tests move one by hand).

    Returns:
        The FastAPI app, with its ``EpochRevocation`` service at ``app.state.authx_epoch``.
    """
    app = FastAPI(
        title="authx-epoch demo",
        description="AuthX's token-revocation scenarios on generation-counter revocation. "
        "Log in as alice / wonderland or bob / builder.",
    )
    secret = secret if secret is not None else _secret()
    auth: AuthX[Any] = AuthX(config=AuthXConfig(JWT_SECRET_KEY=secret, JWT_TOKEN_LOCATION=["headers"]))
    auth.handle_errors(app)
    sessions = SessionStore()
    auth.set_session_store(sessions)
    # Before any middleware: install() refuses to come after auth.implicit_refresh_middleware.
    # The root namespace, named: where the CLI looks by default, and shared on purpose by every
    # app built here on the same store (the tests build one per simulated restart).
    revocation: EpochRevocation = install(auth, store=store, app=app, clock=clock, namespace="")
    users = UserTable.with_demo_users()
    # Dependency aliases, named like the types they are.
    Access = Annotated[TokenPayload, Depends(auth.access_token_required)]  # noqa: N806
    Fresh = Annotated[TokenPayload, Depends(auth.fresh_token_required)]  # noqa: N806

    async def issue_pair(uid: str, request: Request) -> TokenPair:
        # A new session: AuthX's session store keeps it (for /sessions), the revocation store
        # keeps its generation; both tokens carry its id.
        return await revocation.create_token_pair(uid, fresh=True, request=request)

    @app.post("/login", tags=["tokens"])
    async def login(credentials: Credentials, request: Request) -> TokenPair:
        """Log in: a fresh access token and a refresh token for a new session."""
        if not users.authenticate(credentials.username, credentials.password):
            raise HTTPException(status_code=401, detail="wrong username or password")
        return await issue_pair(credentials.username, request)

    @app.get("/me", tags=["protected"])
    async def me(payload: Access) -> Me:
        """A protected route: who the access token belongs to."""
        return Me(uid=str(payload.sub), session_id=session_of(payload), fresh=bool(payload.fresh))

    @app.post("/refresh", tags=["tokens"])
    async def refresh(request: Request) -> TokenPair:
        """Rotation: trade the refresh token for the session's next pair (the access token is not fresh).

        A refresh token can be used once (a retry within a few seconds is fine); presenting a used
        one again revokes the whole session, as a stolen token would be (401, RefreshTokenReusedError).
        """
        # Read from where AuthX reads refresh tokens; rotate_refresh_token verifies it like AuthX.
        presented = await auth.get_refresh_token_from_request(request)
        return await revocation.rotate_refresh_token(presented.token)

    @app.post("/logout", tags=["revocation"])
    async def logout(payload: Access) -> Message:
        """Revoke the presented access token only; the user's other tokens keep working."""
        await revocation.revoke_token(payload)
        return Message(message="this token is revoked")

    @app.post("/logout-session", tags=["revocation"])
    async def logout_session(payload: Access) -> Message:
        """Log out this device: revoke this token's session, its access tokens and its refresh token."""
        session_id = session_of(payload)
        if session_id is None:
            raise HTTPException(status_code=400, detail="this token carries no session")
        await auth.revoke_session(session_id)
        return Message(message="this session is revoked")

    @app.post("/logout-all", tags=["revocation"])
    async def logout_all(payload: Access) -> Message:
        """Log out everywhere: one epoch bump revokes every token of the user."""
        uid = str(payload.sub)
        await revocation.bump_user_epoch(uid, reason="logout_all")
        await sessions.delete_all_by_user(uid)
        return Message(message="every token of this user is revoked")

    @app.post("/change-password", tags=["revocation"])
    async def change_password(change: PasswordChange, request: Request, payload: Fresh) -> TokenPair:
        """Change the password (fresh token required): every older token dies; a new pair is returned."""
        uid = str(payload.sub)
        if not users.authenticate(uid, change.current_password):
            raise HTTPException(status_code=403, detail="the current password is wrong")
        users.set_password(uid, change.new_password)
        await revocation.bump_user_epoch(uid, reason="password_change")
        await sessions.delete_all_by_user(uid)
        return await issue_pair(uid, request)

    @app.get("/sessions", tags=["protected"])
    async def list_sessions(payload: Access) -> list[SessionInfo]:
        """My sessions: the user's active sessions, one per login (AuthX's session store)."""
        return await auth.list_sessions(str(payload.sub))

    app.mount(
        BROWSER_PATH,
        create_browser_app(revocation.store, secret=secret, users=users, sessions=sessions, clock=clock),
    )
    return app

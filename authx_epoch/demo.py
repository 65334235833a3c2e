"""The demo: the scenarios of AuthX's token-revocation guide, rebuilt on authx-epoch.

Run it with ``scripts/demo``, ``authx-epoch demo`` or ``python -m authx_epoch.demo`` and open
http://127.0.0.1:8000/docs. Two users exist: ``alice`` / ``wonderland`` and ``bob`` / ``builder``.

| route | what it shows |
|---|---|
| ``POST /login`` | a new session: a fresh access token and a refresh token (``create_token_pair``) |
| ``GET /me`` | a protected route |
| ``POST /logout`` | this token only is revoked (by its ``jti``) |
| ``POST /logout-session`` | log out this device: its session's access and refresh tokens are revoked |
| ``POST /logout-all`` | one epoch bump: every token of the user is revoked |
| ``POST /change-password`` | needs a fresh token; bumps the epoch and returns a new pair |
| ``POST /refresh`` | rotation: the refresh token buys the session's next pair; replaying a used one
  revokes the session (``RefreshTokenReusedError``, 401) |
| ``GET /sessions`` | my sessions (AuthX's session store) |
| ``GET /browser/`` | a login page for browsers: the same users on HttpOnly cookies with CSRF
  double submit (``create_browser_app``) |

The JWT secret comes from ``AUTHX_EPOCH_DEMO_SECRET``, or is generated at start (tokens then do
not survive a restart). The user table lives in memory and resets on restart; the revocation
state lives in the store (a SQLite file by default) and survives it.
"""

# No "from __future__ import annotations": FastAPI must see the dependency aliases defined inside
# create_app(), which string annotations would hide from it.
import argparse
import errno
import hashlib
import hmac
import os
import secrets
import socket
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Optional

from authx import AuthX, AuthXConfig, SessionInfo, TokenPayload
from fastapi import Depends, FastAPI, HTTPException, Request, Response
from fastapi.responses import HTMLResponse
from pydantic import BaseModel

from authx_epoch.checking import Clock, wall_clock
from authx_epoch.errors import ConfigurationError
from authx_epoch.integrations.authx import DEFAULT_STORE, install
from authx_epoch.revocation import EpochRevocation
from authx_epoch.sessions import SessionTokens
from authx_epoch.stores import Store

#: The environment variable holding the demo's JWT secret.
SECRET_ENV = "AUTHX_EPOCH_DEMO_SECRET"

#: The demo's users and their passwords (hashed at start; the plain text is only for trying it out).
DEMO_USERS: dict[str, str] = {"alice": "wonderland", "bob": "builder"}

# scrypt cost parameters: OWASP's minimum (N=2**17 would be slower than a demo's tests need).
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}


def hash_password(password: str, salt: Optional[bytes] = None) -> tuple[bytes, bytes]:
    """Return ``(salt, scrypt hash)`` of ``password``; a random salt unless one is given."""
    salt = salt if salt is not None else secrets.token_bytes(16)
    return salt, hashlib.scrypt(password.encode(), salt=salt, **_SCRYPT)


def verify_password(password: str, salt: bytes, expected: bytes) -> bool:
    """Return whether ``password`` hashes to ``expected`` with ``salt``, in constant time."""
    return hmac.compare_digest(hash_password(password, salt)[1], expected)


class SessionStore:
    """A dictionary of AuthX sessions, implementing AuthX's ``SessionStoreProtocol``.

    AuthX's own in-memory store is private (``authx._internal``); this one is the same idea
    through the public protocol. One process only, like the demo's user table.
    """

    def __init__(self) -> None:
        self._sessions: dict[str, SessionInfo] = {}

    async def create(self, session: SessionInfo) -> None:
        """Keep a new session."""
        self._sessions[session.session_id] = session

    async def get(self, session_id: str) -> Optional[SessionInfo]:
        """Return a session by id, or ``None``."""
        return self._sessions.get(session_id)

    async def update(self, session_id: str, **kwargs: Any) -> None:
        """Change fields of a session."""
        session = self._sessions.get(session_id)
        if session is not None:
            self._sessions[session_id] = session.model_copy(update=kwargs)

    async def delete(self, session_id: str) -> None:
        """Forget a session."""
        self._sessions.pop(session_id, None)

    async def list_by_user(self, uid: str) -> list[SessionInfo]:
        """Return the active sessions of ``uid``."""
        return [session for session in self._sessions.values() if session.uid == uid and session.is_active]

    async def delete_all_by_user(self, uid: str) -> None:
        """Forget every session of ``uid``."""
        for session_id in [sid for sid, session in self._sessions.items() if session.uid == uid]:
            del self._sessions[session_id]


@dataclass
class UserTable:
    """The demo's users: name -> (salt, scrypt hash). Real apps keep this in their database."""

    hashes: dict[str, tuple[bytes, bytes]] = field(default_factory=dict)

    @classmethod
    def with_demo_users(cls) -> "UserTable":
        """Return a table holding ``DEMO_USERS``."""
        return cls({name: hash_password(password) for name, password in DEMO_USERS.items()})

    def authenticate(self, username: str, password: str) -> bool:
        """Return whether the username exists and the password matches."""
        stored = self.hashes.get(username)
        if stored is None:
            # Hash anyway, so an unknown name takes as long to refuse as a wrong password.
            hash_password(password)
            return False
        return verify_password(password, *stored)

    def set_password(self, username: str, password: str) -> None:
        """Replace a user's password."""
        self.hashes[username] = hash_password(password)


class Credentials(BaseModel):
    """The body of ``POST /login``."""

    username: str
    password: str


class PasswordChange(BaseModel):
    """The body of ``POST /change-password``."""

    current_password: str
    new_password: str


#: Tokens returned by ``/login``, ``/refresh`` and ``/change-password``: a session's pair and its id.
TokenPair = SessionTokens


class Message(BaseModel):
    """A plain answer."""

    message: str


class Me(BaseModel):
    """The answer of ``GET /me``."""

    uid: str
    session_id: Optional[str]
    fresh: bool


def _session_of(payload: TokenPayload) -> Optional[str]:
    value = (payload.model_extra or {}).get("session_id")
    return value if isinstance(value, str) else None


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
        return Me(uid=str(payload.sub), session_id=_session_of(payload), fresh=bool(payload.fresh))

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
        session_id = _session_of(payload)
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


#: Where ``create_app`` mounts the browser page and its routes.
BROWSER_PATH = "/browser"

_BROWSER_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>authx-epoch demo: cookies</title>
<style>
  body { font: 16px/1.5 system-ui, sans-serif; max-width: 40rem; margin: 2rem auto; padding: 0 1rem; }
  input, button { font: inherit; margin: 0.2rem 0.2rem 0.2rem 0; }
  #log { font-family: ui-monospace, monospace; font-size: 0.85rem; }
  #log li[data-ok="false"] { color: #a00; }
</style>
</head>
<body>
<h1>authx-epoch demo: cookies</h1>
<p>The tokens live in HttpOnly cookies this page cannot read; each POST sends the CSRF cookie's
value back in the <code>X-CSRF-TOKEN</code> header (double submit). Log in as alice / wonderland
or bob / builder, in two browsers (two devices), and log out one or both.</p>
<form id="login">
  <input name="username" placeholder="username" autocomplete="username" required>
  <input name="password" type="password" placeholder="password" autocomplete="current-password" required>
  <button id="do-login">Log in</button>
</form>
<p>
  <button id="do-me">Who am I</button>
  <button id="do-refresh">Refresh</button>
  <button id="do-logout">Log out this device</button>
  <button id="do-logout-all">Log out everywhere</button>
</p>
<ol id="log"></ol>
<script>
"use strict";
// The value of a cookie this page can read: only the CSRF cookies are not HttpOnly.
function cookie(name) {
  const found = document.cookie.split("; ").find((c) => c.startsWith(name + "="));
  return found ? decodeURIComponent(found.slice(name.length + 1)) : "";
}
async function call(action, path, options) {
  const response = await fetch(path, { credentials: "same-origin", ...options });
  const item = document.createElement("li");
  item.dataset.action = action;
  item.dataset.status = String(response.status);
  item.dataset.ok = String(response.ok);
  item.textContent = action + " \u2192 " + response.status + " " + (await response.text());
  document.getElementById("log").append(item);
}
// A POST with the double-submit header: the value of the CSRF cookie named csrfCookie.
function post(action, path, csrfCookie) {
  return call(action, path, { method: "POST", headers: { "X-CSRF-TOKEN": cookie(csrfCookie) } });
}
document.getElementById("login").addEventListener("submit", (event) => {
  event.preventDefault();
  const form = new FormData(event.target);
  call("login", "login", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ username: form.get("username"), password: form.get("password") }),
  });
});
document.getElementById("do-me").addEventListener("click", () => call("me", "me", {}));
document.getElementById("do-refresh").addEventListener("click", () => post("refresh", "refresh", "csrf_refresh_token"));
document.getElementById("do-logout").addEventListener("click", () => post("logout", "logout", "csrf_access_token"));
document.getElementById("do-logout-all").addEventListener("click",
  () => post("logout-all", "logout-all", "csrf_access_token"));
</script>
</body>
</html>
"""


class BrowserSession(BaseModel):
    """What the browser routes answer: the user and the session; the tokens are in the cookies only."""

    uid: str
    session_id: str


def create_browser_app(
    store: Store,
    *,
    secret: str,
    users: UserTable,
    sessions: Optional[SessionStore] = None,
    clock: Clock = wall_clock,
) -> FastAPI:
    """Build the browser side of the demo: a login page and its routes, on cookies with CSRF protection.

    ``create_app`` mounts it at ``/browser``. It has its own AuthX instance, configured for cookies,
    installed on the API's store and, on purpose, in the same namespace (``""``): one user base, so
    logging out everywhere from a browser also revokes the user's API tokens, and the CLI sees both.

    Args:
        store: The revocation store the API uses (``revocation.store``).
        secret: The JWT secret.
        users: The user table the API uses.
        sessions: The API's AuthX session store, so browser logins are listed by ``GET /sessions``.
        clock: The revocation service's clock (the API's).

    Returns:
        The FastAPI app, with its ``EpochRevocation`` service at ``app.state.authx_epoch``.
    """
    app = FastAPI(title="authx-epoch demo: cookies", docs_url=None, redoc_url=None, openapi_url=None)
    prefix = BROWSER_PATH + "/"
    auth: AuthX[Any] = AuthX(
        config=AuthXConfig(
            JWT_SECRET_KEY=secret,
            JWT_TOKEN_LOCATION=["cookies"],
            JWT_COOKIE_CSRF_PROTECT=True,  # AuthX's default, said out loud: POSTs need X-CSRF-TOKEN
            # The demo serves plain http on loopback; behind HTTPS keep AuthX's default, True.
            JWT_COOKIE_SECURE=False,
            # Only this page's own requests carry the cookies: it needs no cross-site request.
            JWT_COOKIE_SAMESITE="strict",
            JWT_ACCESS_COOKIE_PATH=prefix,
            JWT_ACCESS_CSRF_COOKIE_PATH=prefix,
            # The refresh token goes to the refresh route only; its CSRF cookie must stay readable
            # by the page, which lives at the prefix.
            JWT_REFRESH_COOKIE_PATH=prefix + "refresh",
            JWT_REFRESH_CSRF_COOKIE_PATH=prefix,
        )
    )
    auth.handle_errors(app)
    if sessions is not None:
        auth.set_session_store(sessions)
    # The API's namespace, named on both sides: sharing it is the point (see the docstring).
    revocation: EpochRevocation = install(auth, store=store, app=app, clock=clock, namespace="")
    Access = Annotated[TokenPayload, Depends(auth.access_token_required)]  # noqa: N806
    Rotated = Annotated[SessionTokens, Depends(revocation.rotated_tokens)]  # noqa: N806
    CurrentSession = Annotated[str, Depends(revocation.current_session)]  # noqa: N806

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> HTMLResponse:
        """The login page."""
        return HTMLResponse(
            _BROWSER_PAGE,
            headers={
                # Nothing but this page's inline script and style, and requests to this origin.
                "Content-Security-Policy": "default-src 'self'; script-src 'unsafe-inline'; "
                "style-src 'unsafe-inline'; frame-ancestors 'none'",
                "Cache-Control": "no-store",
            },
        )

    @app.post("/login")
    async def login(credentials: Credentials, request: Request, response: Response) -> BrowserSession:
        """Log in: a new session, its tokens set as HttpOnly cookies (with their CSRF cookies)."""
        if not users.authenticate(credentials.username, credentials.password):
            raise HTTPException(status_code=401, detail="wrong username or password")
        pair = await revocation.create_token_pair(credentials.username, fresh=True, request=request)
        auth.set_access_cookies(pair.access_token, response)
        auth.set_refresh_cookies(pair.refresh_token, response)
        return BrowserSession(uid=credentials.username, session_id=pair.session_id)

    @app.get("/me")
    async def me(payload: Access) -> Me:
        """A protected GET (no CSRF header needed): who the access cookie belongs to."""
        return Me(uid=str(payload.sub), session_id=_session_of(payload), fresh=bool(payload.fresh))

    @app.post("/refresh")
    async def refresh(tokens: Rotated) -> Message:
        """Rotate the refresh cookie (CSRF checked as AuthX checks it); the new pair is set as cookies."""
        return Message(message=f"session {tokens.session_id} has a new pair")

    @app.post("/logout")
    async def logout(session_id: CurrentSession, payload: Access, response: Response) -> Message:
        """Log out this device: its session is revoked (every token of it), and its cookies cleared."""
        await revocation.revoke_session(session_id)
        auth.unset_cookies(response)
        return Message(message=f"session {session_id} of {payload.sub} is revoked")

    @app.post("/logout-all")
    async def logout_all(payload: Access, response: Response) -> Message:
        """Log out everywhere: one epoch bump revokes every token of the user, browsers and API alike."""
        uid = str(payload.sub)
        await revocation.bump_user_epoch(uid, reason="logout_all")
        if sessions is not None:
            await sessions.delete_all_by_user(uid)
        auth.unset_cookies(response)
        return Message(message=f"every token of {uid} is revoked")

    return app


def _listen(host: str, port: int) -> socket.socket:
    # Bind here, so a busy port is one line saying what to do instead of uvicorn's log; the socket
    # is then handed to uvicorn, so nothing can take the port in between.
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does; a listener still wins
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            other = port + 1 if 0 < port < 65535 else 8001
            raise ConfigurationError(
                f"port {port} on {host} is already in use (is another demo still running?); "
                f"pick another with --port, for example --port {other}"
            ) from exc
        raise ConfigurationError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    return sock


def serve(*, host: str = "127.0.0.1", port: int = 8000, store: str = DEFAULT_STORE) -> None:
    """Run the demo with uvicorn until interrupted.

    Raises:
        SystemExit: uvicorn is missing (install the ``demo`` extra).
        ConfigurationError: the store URL is unusable, or the port is taken (the message says how
            to pick another) or cannot be listened on.
    """
    try:
        import uvicorn
    except ImportError as exc:
        raise SystemExit("the demo needs uvicorn: pip install 'authx-epoch[demo]'") from exc
    app = create_app(store)
    sock = _listen(host, port)
    print(f"authx-epoch demo: store {store}, Swagger UI at http://{host}:{port}/docs", file=sys.stderr)
    uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="info")).run(sockets=[sock])


def main(argv: Optional[Sequence[str]] = None, *, prog: str = "python -m authx_epoch.demo") -> None:
    """Parse the command line and run the demo (``scripts/demo`` passes its own name as ``prog``)."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Run the authx-epoch demo app: log in as alice / wonderland or bob / builder, "
        "then follow the README's curl walk-through (it can be run again and again against one "
        "demo) or click through Swagger UI at /docs.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: %(default)s)")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on (default: %(default)s)")
    parser.add_argument("--store", default=DEFAULT_STORE, help="revocation store URL (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        serve(host=args.host, port=args.port, store=args.store)
    except ConfigurationError as exc:
        parser.exit(2, f"{prog}: {exc}\n")


if __name__ == "__main__":
    main()

"""The demo's browser page: a login page and its routes, on HttpOnly cookies with CSRF double submit."""

# No "from __future__ import annotations": FastAPI must see the dependency aliases defined inside
# create_browser_app(), which string annotations would hide from it.
from typing import Annotated, Any, Optional

from authx import AuthX, AuthXConfig, TokenPayload
from fastapi import Depends, FastAPI, HTTPException, Request, Response
from fastapi.responses import HTMLResponse
from pydantic import BaseModel

from authx_epoch.checking import Clock, wall_clock
from authx_epoch.demo.models import Credentials, Me, Message, session_of
from authx_epoch.demo.users import SessionStore, UserTable
from authx_epoch.integrations.authx import install
from authx_epoch.revocation import EpochRevocation
from authx_epoch.sessions import SessionTokens
from authx_epoch.stores import Store

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
        return Me(uid=str(payload.sub), session_id=session_of(payload), fresh=bool(payload.fresh))

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

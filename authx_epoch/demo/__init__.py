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

from authx_epoch.demo.api import SECRET_ENV, create_app
from authx_epoch.demo.browser import BROWSER_PATH, BrowserSession, create_browser_app
from authx_epoch.demo.models import Credentials, Me, Message, PasswordChange, TokenPair
from authx_epoch.demo.server import listen, main, serve
from authx_epoch.demo.users import DEMO_USERS, SessionStore, UserTable, hash_password, verify_password
from authx_epoch.integrations.authx import DEFAULT_STORE

__all__ = [
    "BROWSER_PATH",
    "DEFAULT_STORE",
    "DEMO_USERS",
    "SECRET_ENV",
    "BrowserSession",
    "Credentials",
    "Me",
    "Message",
    "PasswordChange",
    "SessionStore",
    "TokenPair",
    "UserTable",
    "create_app",
    "create_browser_app",
    "hash_password",
    "listen",
    "main",
    "serve",
    "verify_password",
]

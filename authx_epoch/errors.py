"""Every exception authx-epoch raises, in one place.

Each message says what to do next. Driver errors are wrapped with ``raise ... from exc``
so the original cause stays in the traceback without leaking into HTTP answers.
"""

from __future__ import annotations

from typing import Any, Optional

from authx.exceptions import AuthXException, RevokedTokenError
from starlette.exceptions import HTTPException

#: What a client is told when the store cannot be reached (fail-closed): the body of the 503.
STORE_UNAVAILABLE_MESSAGE = "Token revocation service unavailable, try again shortly"


class AuthxEpochError(Exception):
    """Base class of every error raised by authx-epoch."""


class ConfigurationError(AuthxEpochError, ValueError):
    """The library was set up wrongly: a bad store URL, an unknown option, a second install.

    Raised at ``install()`` time, never while serving a request.
    """


class MissingAwaitError(AuthxEpochError, TypeError):
    """A coroutine method was called where nothing can await it: a ``def`` endpoint or dependency.

    Use the blocking twin there (``revocation.sync.bump_user_epoch(...)``), or make the endpoint
    ``async def`` and ``await`` the call.
    """


class InvalidArgumentError(AuthxEpochError, ValueError):
    """A public method was given an argument it cannot use; nothing was changed in the store."""


class SessionOwnerError(InvalidArgumentError):
    """A session id was used for a user other than the one its session belongs to; nothing was changed.

    A session belongs to the user it was created for: no token of another user can extend, rotate
    or revoke it. Session ids come from ``create_token_pair`` (or AuthX's ``create_session``);
    never take one from client data.
    """

    def __init__(
        self,
        message: str = (
            "this session belongs to another user, so it cannot be used for this one; nothing was changed. "
            "Session ids come from create_token_pair (or AuthX's create_session): never take one from client data"
        ),
    ) -> None:
        """Build the error with the standard message (or ``message``)."""
        super().__init__(message)


class InvalidTokenError(InvalidArgumentError):
    """A token given to ``revoke_token`` (or the CLI) could not be read or verified."""


class StoreUnavailableError(AuthxEpochError, AuthXException, HTTPException):
    """The revocation store could not be read or written.

    In fail-closed mode (the default) a request that needs the store gets an HTTP 503 with a
    ``Retry-After`` header. ``install(..., app=app)`` answers it in AuthX's error shape
    (``{"message", "error_type"}``), as AuthX's own dependencies do without the app; anywhere else
    the error is an HTTP exception by itself, so FastAPI answers it with its own 503
    (``{"detail": ...}``), never a 500. The store resumes service on its own once it is reachable
    again. The message (``str(exc)``) says what failed; the HTTP answer never carries it.
    """

    def __init__(self, *args: Any, login_type: Optional[str] = None) -> None:
        AuthXException.__init__(self, *args, login_type=login_type)
        self.status_code = 503
        self.detail = STORE_UNAVAILABLE_MESSAGE
        self.headers = {"Retry-After": "1"}

    def __str__(self) -> str:
        # HTTPException's own __str__ would hide the cause behind "503: ..." in logs.
        return Exception.__str__(self)

    def __repr__(self) -> str:
        return Exception.__repr__(self)


class RefreshTokenReusedError(RevokedTokenError):
    """An already rotated refresh token was presented again after the grace interval.

    The whole session has been revoked: both the legitimate client and whoever replayed the
    token must log in again (RFC 9700, section 4.14.2). AuthX answers it with a 401.
    """

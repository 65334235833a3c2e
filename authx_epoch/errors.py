"""Every exception authx-epoch raises, in one place.

Each message says what to do next. Driver errors are wrapped with ``raise ... from exc``
so the original cause stays in the traceback without leaking into HTTP answers.
"""

from __future__ import annotations

from authx.exceptions import AuthXException, RevokedTokenError


class AuthxEpochError(Exception):
    """Base class of every error raised by authx-epoch."""


class ConfigurationError(AuthxEpochError, ValueError):
    """The library was set up wrongly: a bad store URL, an unknown option, a second install.

    Raised at ``install()`` time, never while serving a request.
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


class StoreUnavailableError(AuthxEpochError, AuthXException):
    """The revocation store could not be read or written.

    In fail-closed mode (the default) a request that needs the store gets an HTTP 503 in
    AuthX's error shape; ``install(..., app=app)`` registers that handler. The store
    resumes service on its own once it is reachable again.
    """


class RefreshTokenReusedError(RevokedTokenError):
    """An already rotated refresh token was presented again after the grace interval.

    The whole session has been revoked: both the legitimate client and whoever replayed the
    token must log in again (RFC 9700, section 4.14.2). AuthX answers it with a 401.
    """

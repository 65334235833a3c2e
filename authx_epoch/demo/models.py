"""The bodies and answers of the demo's routes (pydantic models), and the session id a token carries."""

from typing import Optional

from authx import TokenPayload
from pydantic import BaseModel

from authx_epoch.sessions import SessionTokens


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


def session_of(payload: TokenPayload) -> Optional[str]:
    """The ``session_id`` claim of a token, or ``None`` if it carries none."""
    value = (payload.model_extra or {}).get("session_id")
    return value if isinstance(value, str) else None

"""The demo's users and AuthX sessions, kept in memory: scrypt password hashes and a session store.

Real apps keep both in their database; these reset when the demo restarts.
"""

import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from typing import Any, Optional

from authx import SessionInfo

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

"""Validation of what callers hand the service: ids, reasons, durations and instants.

Every public method of the service checks its arguments here before it reads or writes anything,
so a bad argument is an ``InvalidArgumentError`` naming it. ``shorten`` is how a caller's id is
shown in a log line.
"""

from __future__ import annotations

import datetime as dt
from typing import Optional, Union

from authx_epoch.errors import InvalidArgumentError
from authx_epoch.records import unix_time

#: The longest ``reason`` a bump keeps, in characters.
MAX_REASON_LENGTH = 500
#: The longest user id or session id accepted by the public methods, in characters.
MAX_ID_LENGTH = 16 * 1024


def seconds(value: dt.timedelta, name: str) -> float:
    """A non-negative duration argument in seconds."""
    if not isinstance(value, dt.timedelta):
        raise InvalidArgumentError(f"{name} must be a datetime.timedelta, got {type(value).__name__}")
    total = value.total_seconds()
    if total < 0:
        raise InvalidArgumentError(f"{name} must not be negative, got {value}")
    return total


def timestamp(value: Union[dt.datetime, float, int], name: str) -> float:
    """An instant argument (an aware datetime or Unix seconds) in Unix seconds."""
    if isinstance(value, dt.datetime) and value.tzinfo is None:
        raise InvalidArgumentError(f"{name} must be timezone-aware (e.g. datetime.now(timezone.utc))")
    found = unix_time(value)
    if found is None:
        raise InvalidArgumentError(f"{name} must be an aware datetime or Unix seconds, got {type(value).__name__}")
    return found


def require_unicode(text: str, name: str) -> None:
    """Refuse a string that is not valid Unicode text (it holds a lone surrogate)."""
    # JSON lets a token carry a lone surrogate ("\ud800"); no store can key on it uniformly.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidArgumentError(f"{name} holds a lone surrogate, which is not valid Unicode text") from None


def uid(uid: object) -> str:
    """Validate a user id given to a public method."""
    if not isinstance(uid, str):
        raise InvalidArgumentError(f"uid must be a string, got {type(uid).__name__}")
    if len(uid) > MAX_ID_LENGTH:
        raise InvalidArgumentError(f"uid is longer than {MAX_ID_LENGTH} characters")
    require_unicode(uid, "uid")
    return uid


def reason(reason: object) -> Optional[str]:
    """Validate a bump's reason."""
    if reason is None:
        return None
    if not isinstance(reason, str):
        raise InvalidArgumentError(f"reason must be a string, got {type(reason).__name__}")
    if len(reason) > MAX_REASON_LENGTH:
        raise InvalidArgumentError(f"reason is longer than {MAX_REASON_LENGTH} characters")
    return reason


def session_id(session_id: object) -> str:
    """Validate a session id given to a public method."""
    if not isinstance(session_id, str) or not session_id:
        raise InvalidArgumentError(f"session_id must be a non-empty string, got {session_id!r:.40}")
    if len(session_id) > MAX_ID_LENGTH:
        raise InvalidArgumentError(f"session_id is longer than {MAX_ID_LENGTH} characters")
    require_unicode(session_id, "session_id")
    return session_id


def shorten(text: str, limit: int = 80) -> str:
    """``text`` cut to ``limit`` characters, for a log line."""
    return text if len(text) <= limit else text[:limit] + "…"


__all__ = [
    "MAX_ID_LENGTH",
    "MAX_REASON_LENGTH",
    "reason",
    "require_unicode",
    "seconds",
    "session_id",
    "shorten",
    "timestamp",
    "uid",
]

"""Versioned reads: what a store that versions its users gives a process's local cache.

A store is *versioned* (``Store.versioned``) when every write a check could see moves a version of
the user it touches, and the version never comes back once the user's data is gone. The local
cache then keeps a user whole, not token by token, and confirms what it holds with one small
read of versions instead of reading everyone again:

* ``Store.fetch_view`` answers one check like ``fetch`` and also returns a ``UserView``: the user's
  version and, when the user has few enough, every revoked jti of the user (so a check of the
  user's other tokens is answered from memory too);
* ``Store.read_versions`` returns, in one read, the global record, the version of each user asked
  for and the record of each session asked for: a user whose version has not moved is exactly what
  the cache holds, as of that read.

The Redis store is versioned (``stores/redis/lua/common.lua``: ``touch``); the others are not,
and the cache over them keeps per-token answers for at most its staleness.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Optional

from authx_epoch.records import EpochRecord, SessionRecord


@dataclass(frozen=True)
class UserView:
    """What a versioned store holds of one user, beyond the record, as of one read.

    Attributes:
        version: The user's version: ``b""`` when the store holds nothing of the user, ``None``
            when it cannot be confirmed by a read of versions (the view is then kept ``staleness``).
        revoked: Every revoked jti of the user, by key (``key_of(jti)``), with when each entry
            ends; ``None`` when the user has too many for one read (each jti is then asked for).
        key_of: The key a jti is filed under in ``revoked``.
    """

    version: Optional[bytes]
    revoked: Optional[Mapping[bytes, float]]
    key_of: Callable[[str], bytes]

    def revoked_until(self, jti: str) -> Optional[float]:
        """When the revocation of ``jti`` ends, or ``None`` if it is not revoked (only for a complete view)."""
        assert self.revoked is not None
        return self.revoked.get(self.key_of(jti))


@dataclass(frozen=True)
class Versions:
    """The answer of ``Store.read_versions``: the global record, users' versions, sessions' records."""

    global_: Optional[EpochRecord]
    users: Sequence[Optional[bytes]]
    sessions: Sequence[Optional[SessionRecord]]

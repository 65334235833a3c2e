"""The changes the cache's channel carries: what a write touched, and its msgpack message.

A change is a kind (a user, a session, the global record, or everything) and a key (a digest of
the user id or session id, empty for the others). Every write through a ``LocalCache`` publishes
the changes it made; each process's subscriber decodes them and drops the matching parts.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import msgpack

#: Kinds of change carried by the channel: a user, a session, the global record, everything.
USER, SESSION, GLOBAL, ALL = "u", "s", "g", "*"
#: A change: its kind and its key.
Change = tuple[str, bytes]
#: The change that clears every part.
EVERYTHING: list[Change] = [(ALL, b"")]


def digest_of(text: str) -> bytes:
    """The key of a user id or session id in a change."""
    # Ids travel as digests: a channel any client may SUBSCRIBE to should not list user ids.
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


def encode_message(origin: bytes, changes: Sequence[Change]) -> bytes:
    """A message: ``[origin, [[kind, key], ...]]`` in msgpack (kinds ``u``, ``s``, ``g``, ``*``)."""
    return msgpack.packb([origin, [[kind, key] for kind, key in changes]], use_bin_type=True)  # type: ignore[no-any-return]


def decode_message(payload: object) -> tuple[bytes, list[Change]]:
    """The sender and the changes a message names; anything unreadable means "everything"."""
    try:
        origin, items = msgpack.unpackb(payload, raw=False)
        changes = [(str(kind), bytes(key)) for kind, key in items]
        origin = bytes(origin)
    except Exception:  # any malformed message must clear, never crash the subscriber
        return b"", list(EVERYTHING)
    if not changes or any(kind not in (USER, SESSION, GLOBAL, ALL) for kind, _ in changes):
        return b"", list(EVERYTHING)
    return origin, changes

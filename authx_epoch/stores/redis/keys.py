"""Where a Redis store keeps each entry: the key layout, and the digests that name ids in keys. Pure, no I/O.

Key layout under a prefix ``P`` (``authx-epoch`` by default), in the root namespace::

    P:g                      the global record (no expiry)
    P:{U}:h                  a hash: field ``r`` the record of the user whose id hashes to U,
                             field ``u`` that user's id, fields ``j:J`` that user's revoked jtis J
                             (field ``c``: a sweep cursor; field ``v``: the user's version, see
                             ``views.py``)
    P:s:S                    the record of session S (its generation, expiry and revoked flag)

The keys of namespace ``N`` are the same under ``P~N:`` instead of ``P:`` (``P~N:g``,
``P~N:{U}:h``, ``P~N:s:S``). Neither prefixes nor namespace names may hold ``~``, so the root's
``SCAN`` pattern ``P:*`` never matches a namespace's keys, nor ``P~N:*`` another namespace's: a
wipe, a count or an export of one namespace never touches another.

``U``, ``J`` and ``S`` are the unpadded base64url SHA-256 digests of the UTF-8 ids: 43
characters whatever the id holds (braces, colons, glob characters, newlines, 16 kB of text), so
keys never collide, never break the ``{U}`` hash tag, and never carry an attacker-chosen length
to Redis on the unauthenticated check path. A user's revoked jtis live in the same key as the
user's record, so eviction (``allkeys-lru``) can only drop them together: the record's loss makes
every stamped token of that user a rejection, and a revoked jti can never come back on its own.
A session's revoked flag lives in its record for the same reason. The ids themselves are kept
for ``export``: a session's inside its value, a user's in field ``u`` of the user's hash, once for
the record and every revoked jti. Not inside the record: every value of a hash must stay within
``hash-max-listpack-value`` (64 bytes by default) for Redis to keep the hash in its compact
encoding, and a record holding a UUID or an e-mail address as the id does not (the hash then
costs about 200 bytes more). Hashes written by 0.1 hold the id in the record and in each
jti's value; they read the same, and move to this layout at their next write.
"""

from __future__ import annotations

import base64
import hashlib

from authx_epoch._memo import Memo
from authx_epoch.errors import ConfigurationError

#: The key prefix used when none is configured.
DEFAULT_PREFIX = "authx-epoch"
#: The field of a user's hash that holds the user's record.
RECORD_FIELD = b"r"
#: The field of a user's hash that holds the user's id (for ``export``).
UID_FIELD = b"u"


def check_prefix(prefix: str) -> str:
    """``prefix``, if it can prefix a store's keys.

    Raises:
        ConfigurationError: It is empty, or holds braces (they select Cluster hash slots) or ``~``
            (it separates namespaces).
    """
    if not isinstance(prefix, str) or not prefix:
        raise ConfigurationError(f"the Redis key prefix must be a non-empty string, got {prefix!r}")
    if "{" in prefix or "}" in prefix:
        raise ConfigurationError(
            f"the Redis key prefix must not contain '{{' or '}}' (they select Cluster hash slots), got {prefix!r}"
        )
    if "~" in prefix:
        raise ConfigurationError(
            f"the Redis key prefix must not contain '~' (it separates namespaces: use namespace=), got {prefix!r}"
        )
    return prefix


def id_bytes(text: str) -> bytes:
    """An id as the bytes its digest and its key parts are made of (lone surrogates kept)."""
    # surrogatepass: a JSON token may carry lone surrogates ("\ud800") in sub or jti; they must
    # hash and store like any other id rather than fail the check.
    return text.encode("utf-8", "surrogatepass")


#: How many digests and decoded records each memo keeps. A check hashes the same few ids and
#: decodes the same few record values over and over; remembering them is a dictionary lookup.
MEMO_SIZE = 4096
#: Ids longer than this are hashed every time, so unverified input cannot fill the memo with
#: large keys.
_MEMO_ID_LENGTH = 256
_digests: Memo[str, bytes] = Memo(MEMO_SIZE)


def digest(text: str) -> bytes:
    """The fixed-length key part for an id: unpadded base64url of its SHA-256."""
    found = _digests.get(text)
    if found is not None:
        return found
    value = base64.urlsafe_b64encode(hashlib.sha256(id_bytes(text)).digest())[:43]
    if len(text) <= _MEMO_ID_LENGTH:
        _digests.put(text, value)
    return value


def glob_escape(data: bytes) -> bytes:
    """``data`` with the ``SCAN`` glob characters escaped, to match it literally in a pattern."""
    out = bytearray()
    for byte in data:
        if byte in b"*?[]\\":
            out += b"\\"
        out.append(byte)
    return bytes(out)

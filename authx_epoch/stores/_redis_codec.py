"""What the Redis stores write and how they read it back: keys, values, scripts. Pure, no I/O.

Both Redis twins (blocking and asyncio) and both deployments (one Redis, Redis Cluster) share
this module; they only send what it builds and hand back what Redis answered.

Key layout under a prefix ``P`` (``authx-epoch`` by default)::

    P:g                      the global record (no expiry)
    P:{U}:u                  the record of the user whose id hashes to U
    P:{U}:j:J                a revoked jti J of that user (expires with its token)
    P:s:S                    a revoked session id S (expires with the session)

``U``, ``J`` and ``S`` are the unpadded base64url SHA-256 digests of the UTF-8 ids: 43
characters whatever the id holds (braces, colons, glob characters, newlines, 16 kB of text), so
keys never collide, never break the ``{U}`` hash tag, and never carry an attacker-chosen length
to Redis on the unauthenticated check path. The tag puts a user's record and revoked jtis in one
Cluster hash slot. The ids themselves are kept inside the values, for ``export``.

Values are msgpack arrays. A record is ``[epoch, created_at, bumped_at, reason, expires_at, uid]``
with the epoch as a decimal string (Lua, which runs the atomic writes, has only doubles); a
revoked id is ``[expires_at, id, uid]``. Every value carries its own expiry, so reads judge
liveness by the application's clock; Redis' own expiry (a relative ``PX``) only frees memory.
"""

from __future__ import annotations

import base64
import hashlib
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, Optional, Union

import msgpack

from authx_epoch.errors import ConfigurationError
from authx_epoch.records import (
    RECORD_SLACK,
    CheckState,
    EpochRecord,
    SnapshotEntry,
    Stamps,
    StoreStats,
    clock_epoch,
    merge_records,
)

#: The key prefix used when none is configured.
DEFAULT_PREFIX = "authx-epoch"

_packer = msgpack.Packer(unicode_errors="surrogatepass", use_bin_type=True)

Value = Optional[bytes]


class UnreadableValueError(ValueError):
    """Redis answered a write with a value this module cannot read (a damaged key)."""


def _pack(value: Any) -> bytes:
    packed: bytes = _packer.pack(value)
    return packed


def _unpack(raw: bytes) -> Any:
    return msgpack.unpackb(raw, raw=False, unicode_errors="surrogatepass", strict_map_key=False)


def _id_bytes(text: str) -> bytes:
    # surrogatepass: a JSON token may carry lone surrogates ("\ud800") in sub or jti; they must
    # hash and store like any other id rather than fail the check.
    return text.encode("utf-8", "surrogatepass")


def digest(text: str) -> bytes:
    """The fixed-length key part for an id: unpadded base64url of its SHA-256."""
    return base64.urlsafe_b64encode(hashlib.sha256(_id_bytes(text)).digest())[:43]


def _glob_escape(data: bytes) -> bytes:
    out = bytearray()
    for byte in data:
        if byte in b"*?[]\\":
            out += b"\\"
        out.append(byte)
    return bytes(out)


@dataclass(frozen=True)
class Script:
    """A Lua script and its SHA-1, as ``EVALSHA`` needs it."""

    name: str
    source: str
    sha: str


def _load_scripts() -> dict[str, Script]:
    folder = resources.files("authx_epoch.stores").joinpath("lua")
    common = folder.joinpath("common.lua").read_text(encoding="utf-8")
    scripts = {}
    for name in ("setup", "issue", "bump", "revoke", "replace"):
        source = common + "\n" + folder.joinpath(f"{name}.lua").read_text(encoding="utf-8")
        scripts[name] = Script(name, source, hashlib.sha1(source.encode()).hexdigest())
    return scripts


SCRIPTS = _load_scripts()
SETUP, ISSUE, BUMP, REVOKE, REPLACE = (SCRIPTS[name] for name in ("setup", "issue", "bump", "revoke", "replace"))


def _absent(value: Any) -> Any:
    # Lua writes false where Python writes nil (a Lua table cannot hold nil).
    return None if value is False else value


def _float(value: Any) -> Optional[float]:
    value = _absent(value)
    return None if value is None else float(value)


def decode_record(raw: Value) -> Optional[EpochRecord]:
    """Read a record value; ``None`` if missing or unreadable (which the decision treats as lost)."""
    if raw is None:
        return None
    try:
        fields = _unpack(raw)
        epoch = int(fields[0])
        created_at = float(fields[1])
        reason = _absent(fields[3])
        return EpochRecord(
            epoch=epoch,
            created_at=created_at,
            bumped_at=_float(fields[2]),
            reason=reason if isinstance(reason, str) else None,
            expires_at=_float(fields[4]),
        )
    except (ValueError, TypeError, IndexError, msgpack.UnpackException):
        return None


def _record_uid(raw: bytes) -> Optional[str]:
    try:
        uid = _absent(_unpack(raw)[5])
    except (ValueError, TypeError, IndexError, msgpack.UnpackException):
        return None
    return uid if isinstance(uid, str) else None


def encode_record(record: EpochRecord, uid: Optional[str]) -> bytes:
    """The value that stores ``record`` (of ``uid``, or of the global scope when ``None``)."""
    return _pack([str(record.epoch), record.created_at, record.bumped_at, record.reason, record.expires_at, uid])


def _revoked_until(raw: Value) -> Optional[float]:
    """When a revoked-id value expires; ``inf`` if unreadable (a damaged entry still rejects)."""
    if raw is None:
        return None
    try:
        return float(_unpack(raw)[0])
    except (ValueError, TypeError, IndexError, msgpack.UnpackException):
        return math.inf


def encode_revoked(expires_at: float, ident: str, uid: Optional[str]) -> bytes:
    """The value of a revoked jti or session id."""
    return _pack([float(expires_at), ident, uid])


def _live(record: Optional[EpochRecord], now: float) -> Optional[EpochRecord]:
    return record if record is not None and record.is_live(now) else None


@dataclass(frozen=True)
class Call:
    """One script invocation: which script, on which keys, with which arguments."""

    script: Script
    keys: list[bytes]
    args: list[Union[bytes, str]]


class KeySpace:
    """Builds every key and script call of one store, and decodes every answer.

    Args:
        prefix: The namespace of this store's keys; several apps can share one Redis with
            different prefixes. It may not contain braces (they would change Cluster hash slots).
        cluster: Whether the keys live on a Redis Cluster, where a script may only touch the keys
            of one hash slot.
    """

    def __init__(self, prefix: str = DEFAULT_PREFIX, *, cluster: bool = False) -> None:
        """Validate ``prefix`` and precompute the fixed keys."""
        if not isinstance(prefix, str) or not prefix:
            raise ConfigurationError(f"the Redis key prefix must be a non-empty string, got {prefix!r}")
        if "{" in prefix or "}" in prefix:
            raise ConfigurationError(
                f"the Redis key prefix must not contain '{{' or '}}' (they select Cluster hash slots), got {prefix!r}"
            )
        self.prefix = prefix
        self.cluster = cluster
        self._p = _id_bytes(prefix) + b":"
        self.global_key = self._p + b"g"
        self.pattern = _glob_escape(self._p) + b"*"

    # -- keys ------------------------------------------------------------------------------

    def user_key(self, uid: str) -> bytes:
        """The key of ``uid``'s record."""
        return self._p + b"{" + digest(uid) + b"}:u"

    def token_key(self, uid: str, jti: str) -> bytes:
        """The key of ``uid``'s revoked ``jti`` (in the user's hash slot)."""
        return self._p + b"{" + digest(uid) + b"}:j:" + digest(jti)

    def session_key(self, session_id: str) -> bytes:
        """The key of a revoked session id."""
        return self._p + b"s:" + digest(session_id)

    def kind_of(self, key: bytes) -> Optional[str]:
        """Which entry a key under the prefix holds: ``global``, ``user``, ``token``, ``session`` or ``None``."""
        if not key.startswith(self._p):
            return None
        rest = key[len(self._p) :]
        if rest == b"g":
            return "global"
        if rest.startswith(b"s:") and len(rest) == 45:
            return "session"
        if rest.startswith(b"{") and rest[44:45] == b"}":
            tail = rest[45:]
            if tail == b":u":
                return "user"
            if tail.startswith(b":j:") and len(tail) == 46:
                return "token"
        return None

    # -- the check -------------------------------------------------------------------------

    def check_keys(self, uid: str, jti: Optional[str], session_id: Optional[str]) -> list[bytes]:
        """The keys one check reads, in one ``MGET``: user, global, then jti and session if any."""
        keys = [self.user_key(uid), self.global_key]
        if jti is not None:
            keys.append(self.token_key(uid, jti))
        if session_id is not None:
            keys.append(self.session_key(session_id))
        return keys

    def check_state(
        self, values: Sequence[Value], jti: Optional[str], session_id: Optional[str], now: float
    ) -> CheckState:
        """Turn the answer to ``check_keys`` into what the decision needs."""
        jti_until = _revoked_until(values[2]) if jti is not None else None
        sid_until = _revoked_until(values[-1]) if session_id is not None else None
        return CheckState(
            user=_live(decode_record(values[0]), now),
            global_=decode_record(values[1]),
            jti_revoked=jti_until is not None and jti_until > now,
            session_revoked=sid_until is not None and sid_until > now,
        )

    # -- writes ----------------------------------------------------------------------------

    def setup_call(self, now: float) -> Call:
        """Create the global record if missing; the script returns it."""
        return Call(SETUP, [self.global_key], [_pack([str(clock_epoch(now)), now])])

    def issue_call(self, uid: str, now: float, expires_at: float) -> Call:
        """Ensure the user's record lives until ``expires_at`` (and, on one Redis, the global record)."""
        keys = [self.user_key(uid)]
        if not self.cluster:
            keys.append(self.global_key)
        args = _pack([str(clock_epoch(now)), now, expires_at, expires_at + RECORD_SLACK, uid])
        return Call(ISSUE, keys, [args])

    def stamps(self, answer: Sequence[bytes], global_raw: Value = None) -> Stamps:
        """The stamps from the answer of ``issue_call`` (and, on Cluster, of ``setup_call``)."""
        user = decode_record(answer[0])
        global_ = decode_record(answer[1] if len(answer) > 1 else global_raw)
        if user is None or global_ is None:
            raise UnreadableValueError("Redis answered an unreadable record")
        return Stamps(user_epoch=user.epoch, global_epoch=global_.epoch)

    def bump_user_call(self, uid: str, now: float, reason: Optional[str], expires_at: float) -> Call:
        """Atomically bump ``uid``'s epoch."""
        return Call(BUMP, [self.user_key(uid)], [_pack([str(clock_epoch(now)), now, reason, expires_at, uid])])

    def bump_global_call(self, now: float, reason: Optional[str]) -> Call:
        """Atomically bump the global epoch."""
        return Call(BUMP, [self.global_key], [_pack([str(clock_epoch(now)), now, reason, None, None])])

    def revoke_token_call(self, uid: str, jti: str, expires_at: float, now: float) -> Call:
        """Put ``jti`` of ``uid`` in the revoked set until ``expires_at``."""
        return Call(REVOKE, [self.token_key(uid, jti)], [encode_revoked(expires_at, jti, uid), repr(float(now))])

    def revoke_session_call(self, session_id: str, expires_at: float, now: float) -> Call:
        """Put ``session_id`` in the revoked set until ``expires_at``."""
        value = encode_revoked(expires_at, session_id, None)
        return Call(REVOKE, [self.session_key(session_id)], [value, repr(float(now))])

    def record_of(self, raw: Value) -> EpochRecord:
        """The record a write script returned."""
        record = decode_record(raw)
        if record is None:
            raise UnreadableValueError("Redis answered an unreadable record")
        return record

    # -- import ----------------------------------------------------------------------------

    def import_key(self, entry: SnapshotEntry) -> Optional[bytes]:
        """The key an imported record goes to, or ``None`` for an entry that is not a record."""
        if entry.record is None:
            return None
        if entry.kind == "global":
            return self.global_key
        if entry.kind == "user":
            return self.user_key(entry.key)
        return None

    def revoke_call_for(self, entry: SnapshotEntry, now: float) -> Optional[Call]:
        """The write that imports a revoked id, or ``None`` if the entry is not one."""
        if entry.expires_at is None:
            return None
        if entry.kind == "token":
            return self.revoke_token_call(entry.uid or "", entry.key, entry.expires_at, now)
        if entry.kind == "session":
            return self.revoke_session_call(entry.key, entry.expires_at, now)
        return None

    def merge_call(self, entry: SnapshotEntry, key: bytes, current: Value, now: float) -> Call:
        """A compare-and-set of ``key`` from ``current`` to ``current`` merged with ``entry``."""
        assert entry.record is not None
        old = _live(decode_record(current), now)
        merged = merge_records(old, entry.record)
        uid = entry.key if entry.kind == "user" else None
        args: list[Union[bytes, str]] = [
            current or b"",
            encode_record(merged, uid),
            "" if merged.expires_at is None else repr(float(merged.expires_at)),
            repr(float(now)),
        ]
        return Call(REPLACE, [key], args)

    # -- listing ---------------------------------------------------------------------------

    def tally(self, items: Iterable[tuple[bytes, Value]], now: float, kind: str) -> StoreStats:
        """Count the live entries among scanned ``(key, value)`` pairs."""
        counts = {"user": 0, "token": 0, "session": 0}
        for entry in self.entries(items, now):
            if entry.kind in counts:
                counts[entry.kind] += 1
        return StoreStats(
            kind=kind, users=counts["user"], revoked_tokens=counts["token"], revoked_sessions=counts["session"]
        )

    def entries(self, items: Iterable[tuple[bytes, Value]], now: float) -> Iterator[SnapshotEntry]:
        """The live snapshot entries among scanned ``(key, value)`` pairs."""
        for key, raw in items:
            kind = self.kind_of(key)
            if kind is None or raw is None:
                continue
            if kind in ("global", "user"):
                record = decode_record(raw)
                if record is None or (kind == "user" and not record.is_live(now)):
                    continue
                uid = "" if kind == "global" else _record_uid(raw)
                if uid is not None:
                    yield SnapshotEntry(kind, uid, record=record)
                continue
            try:
                fields = _unpack(raw)
                until, ident, owner = float(fields[0]), fields[1], _absent(fields[2])
            except (ValueError, TypeError, IndexError, msgpack.UnpackException):
                continue
            if until > now and isinstance(ident, str):
                uid = owner if isinstance(owner, str) else None
                yield SnapshotEntry(kind, ident, expires_at=until, uid=uid if kind == "token" else None)

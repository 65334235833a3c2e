"""What a Redis store writes in its keys, and how it reads them back: msgpack values. Pure, no I/O.

Values are msgpack arrays. A record is ``[epoch, created_at, bumped_at, reason, expires_at, uid]``
with the epoch as a decimal string (Lua, which runs the atomic writes, has only doubles); a
revoked jti is ``[expires_at, jti, uid]``; a session record is ``[generation, first_generation,
created_at, expires_at, uid, rotated_at, previous, revoked, session_id, grace_used]`` (generations
as decimal strings, absent fields ``false``; values written before ``grace_used`` existed have nine
elements and read as ``false``). Every value carries its own expiry, so reads judge liveness by
the application's clock; Redis' own expiry (a relative ``PX``) only frees memory. A user's hash
lives as long as its longest entry; expired jti fields are ignored on read and swept a few at a
time by the writes to that hash.
"""

from __future__ import annotations

import math
from typing import Any, Optional, Union

import msgpack

from authx_epoch._memo import Memo
from authx_epoch.records import EpochRecord, SessionRecord
from authx_epoch.stores.redis.keys import MEMO_SIZE

_packer = msgpack.Packer(unicode_errors="surrogatepass", use_bin_type=True)

Value = Optional[bytes]
#: What a scan reads for one key: a string value, or the fields of a user's hash.
Scanned = Union[Value, dict[bytes, bytes]]


class UnreadableValueError(ValueError):
    """Redis answered a write with a value this module cannot read (a damaged key)."""


def pack(value: Any) -> bytes:
    """``value`` as msgpack (strings as UTF-8 with lone surrogates kept, bytes as bin)."""
    packed: bytes = _packer.pack(value)
    return packed


def unpack(raw: bytes) -> Any:
    """The msgpack value ``raw`` holds (raises on damaged input)."""
    return msgpack.unpackb(raw, raw=False, unicode_errors="surrogatepass", strict_map_key=False)


#: What a damaged session value reads as: revoked, forever (a damaged entry still rejects).
_DAMAGED_SESSION = SessionRecord(generation=0, first_generation=0, created_at=0.0, expires_at=math.inf, revoked=True)


def absent(value: Any) -> Any:
    """``value``, or ``None`` where Lua wrote ``false`` for an absent field."""
    # Lua writes false where Python writes nil (a Lua table cannot hold nil).
    return None if value is False else value


def _float(value: Any) -> Optional[float]:
    value = absent(value)
    return None if value is None else float(value)


_records: Memo[bytes, EpochRecord] = Memo(MEMO_SIZE)


def decode_record(raw: Value) -> Optional[EpochRecord]:
    """Read a record value; ``None`` if missing or unreadable (which the decision treats as lost)."""
    if raw is None:
        return None
    # Records are immutable and their values come from the store, not from the request.
    found = _records.get(raw)
    if found is not None:
        return found
    record = _decode_record(raw)
    if record is not None:
        _records.put(raw, record)
    return record


def _decode_record(raw: bytes) -> Optional[EpochRecord]:
    try:
        fields = unpack(raw)
        epoch = int(fields[0])
        created_at = float(fields[1])
        reason = absent(fields[3])
        return EpochRecord(
            epoch=epoch,
            created_at=created_at,
            bumped_at=_float(fields[2]),
            reason=reason if isinstance(reason, str) else None,
            expires_at=_float(fields[4]),
        )
    except (ValueError, TypeError, IndexError, msgpack.UnpackException):
        return None


def record_uid(raw: bytes) -> Optional[str]:
    """The user id kept in a record value by 0.1, or ``None`` (see ``encode_record``)."""
    try:
        uid = absent(unpack(raw)[5])
    except (ValueError, TypeError, IndexError, msgpack.UnpackException):
        return None
    return uid if isinstance(uid, str) else None


def encode_record(record: EpochRecord) -> bytes:
    """The value that stores ``record``.

    A user's id is not in it: the user's hash keeps it in a field of its own (see ``keys``), so
    that a long id cannot push the record past the 64 bytes of Redis' compact hash encoding.
    The last element stays, ``nil``, where 0.1 kept the id.
    """
    return pack([str(record.epoch), record.created_at, record.bumped_at, record.reason, record.expires_at, None])


def id_text(raw: Value) -> Optional[str]:
    """An id as a hash field stored it (see ``keys.id_bytes``); ``None`` if absent or unreadable."""
    if not isinstance(raw, bytes):
        return None
    try:
        return raw.decode("utf-8", "surrogatepass")
    except UnicodeDecodeError:
        return None


def revoked_until(raw: Value) -> Optional[float]:
    """When a revoked-id value expires; ``inf`` if unreadable (a damaged entry still rejects)."""
    if raw is None:
        return None
    try:
        return float(unpack(raw)[0])
    except (ValueError, TypeError, IndexError, msgpack.UnpackException):
        return math.inf


def encode_revoked(expires_at: float, ident: str) -> bytes:
    """The value of a revoked jti (in its owner's hash, which names the owner in field ``u``)."""
    return pack([float(expires_at), ident])


def _generation(value: Any) -> Optional[int]:
    value = absent(value)
    return None if value is None else int(value)


def decode_session(raw: Value) -> Optional[SessionRecord]:
    """Read a session value; ``None`` if missing. A damaged one reads as revoked (it still rejects)."""
    if raw is None:
        return None
    try:
        fields = unpack(raw)
        if isinstance(fields[0], (int, float)):
            # Written before session records existed: [expires_at, session_id, uid], a revoked id.
            return SessionRecord(0, 0, 0.0, float(fields[0]), revoked=True)
        uid = absent(fields[4])
        generation, first = int(fields[0]), int(fields[1])
        return SessionRecord(
            generation=generation,
            first_generation=first,
            created_at=float(fields[2]),
            expires_at=float(fields[3]),
            uid=uid if isinstance(uid, str) else None,
            rotated_at=_float(fields[5]),
            previous=_generation(fields[6]),
            revoked=bool(absent(fields[7])),
            # Written before grace_used existed: nine elements, the grace not yet used.
            grace_used=len(fields) > 9 and bool(absent(fields[9])),
        )
    except (ValueError, TypeError, IndexError, msgpack.UnpackException):
        return _DAMAGED_SESSION


def encode_session(record: SessionRecord, session_id: str) -> bytes:
    """The value that stores a session's record, exactly as the scripts write one (absent fields ``false``)."""

    def false_if_none(value: Any) -> Any:
        return False if value is None else value

    return pack(
        [
            str(record.generation),
            str(record.first_generation),
            float(record.created_at),
            float(record.expires_at),
            false_if_none(record.uid),
            false_if_none(None if record.rotated_at is None else float(record.rotated_at)),
            false_if_none(None if record.previous is None else str(record.previous)),
            record.revoked,
            session_id,
            record.grace_used,
        ]
    )


def session_id_of(raw: bytes) -> Optional[str]:
    """The session id kept in a session value, or ``None`` if unreadable."""
    try:
        fields = unpack(raw)
        sid = absent(fields[1] if isinstance(fields[0], (int, float)) else fields[8])
    except (ValueError, TypeError, IndexError, msgpack.UnpackException):
        return None
    return sid if isinstance(sid, str) else None


def live(record: Optional[EpochRecord], now: float) -> Optional[EpochRecord]:
    """``record`` if it is live at ``now``, else ``None``."""
    return record if record is not None and record.is_live(now) else None

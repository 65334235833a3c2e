"""The snapshot file: a store's whole revocation state in msgpack, to back it up or move it.

A snapshot is a msgpack stream: first a header map, then one array per entry.

```
{"format": "authx-epoch-snapshot", "version": 3, "created_at": 1718000000.0, "source": "sqlite",
 "namespace": "", "entries": 4}
["global", "", [epoch, created_at, bumped_at, reason, expires_at], None, None]
["user", "alice", [epoch, created_at, bumped_at, reason, expires_at], None, None]
["token", "<jti>", None, expires_at, "<owner uid>"]
["session", "<session id>", [generation, first_generation, created_at, expires_at, uid, rotated_at,
                             previous, revoked, grace_used], expires_at, None]
```

Version 3 added the header's ``namespace`` (the namespace the entries were exported from; for
information only: they import into whatever namespace the importing store works in) and the
session record's ``grace_used``; a revoked token's owner is required (a revoked jti is per user).
Version 2 added the session record (live sessions and revoked ones). Versions 1 and 2 are still
read: version-2 session records read with ``grace_used`` false, version-1 ``session`` rows have no
record (``None`` in its place) and stand for revoked session ids, imported as such. A token row
without its owner (only version 1 could write one) is refused, and with it the whole file. Older
readers refuse newer files, rather than dropping what they do not know or misreading it.

The header names the format and its version, so a file that is not a snapshot (or one written by
a newer version) is refused before anything is imported, and it counts the entries, so a
truncated file is refused too. Reading validates every entry before returning any of them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import IO, Any, Optional

import msgpack

from authx_epoch.errors import ConfigurationError, InvalidArgumentError
from authx_epoch.records import MAX_EPOCH, EpochRecord, SessionRecord, SnapshotEntry
from authx_epoch.stores.namespaces import check_namespace
from authx_epoch.validation import MAX_ID_LENGTH as _MAX_ID
from authx_epoch.validation import MAX_REASON_LENGTH as _MAX_REASON

#: The value of the header's ``format`` field.
SNAPSHOT_FORMAT = "authx-epoch-snapshot"
#: The version this code writes, and the newest it reads.
SNAPSHOT_VERSION = 3

#: The kinds of entry a snapshot holds (see ``SnapshotEntry``).
ENTRY_KINDS = frozenset({"global", "user", "token", "session"})


@dataclass(frozen=True)
class SnapshotHeader:
    """What the first object of a snapshot says about the rest.

    Attributes:
        version: The snapshot format version.
        created_at: When the snapshot was written (Unix seconds).
        source: The kind of store it was exported from (``memory``, ``sqlite``, ``redis``...).
        entries: How many entries follow.
        namespace: The namespace it was exported from (``""``: the root, and for files before
            version 3); for information only.
    """

    version: int
    created_at: float
    source: str
    entries: int
    namespace: str = ""


def _record_row(record: EpochRecord) -> list[Any]:
    return [record.epoch, record.created_at, record.bumped_at, record.reason, record.expires_at]


def _session_row(session: SessionRecord) -> list[Any]:
    return [
        session.generation,
        session.first_generation,
        session.created_at,
        session.expires_at,
        session.uid,
        session.rotated_at,
        session.previous,
        session.revoked,
        session.grace_used,
    ]


def _entry_row(entry: SnapshotEntry) -> list[Any]:
    if entry.session is not None:
        return [entry.kind, entry.key, _session_row(entry.session), entry.session.expires_at, entry.uid]
    record = _record_row(entry.record) if entry.record is not None else None
    return [entry.kind, entry.key, record, entry.expires_at, entry.uid]


def write_snapshot(
    stream: IO[bytes],
    entries: Sequence[SnapshotEntry],
    *,
    source: str,
    now: float,
    progress: Optional[Callable[[int], None]] = None,
    namespace: str = "",
) -> SnapshotHeader:
    """Write ``entries`` to ``stream`` as a snapshot and return its header.

    Args:
        stream: A binary file open for writing.
        entries: What ``export_entries`` yielded.
        source: The kind of the store the entries come from.
        now: The snapshot's time stamp (Unix seconds).
        progress: Called with the number of entries written since the last call.
        namespace: The namespace the entries come from (recorded in the header).

    Raises:
        InvalidArgumentError: A revoked token entry has no owner; nothing was written.
    """
    for entry in entries:
        if entry.kind == "token" and entry.uid is None:
            raise InvalidArgumentError(f"the revoked token {entry.key!r:.40} has no owner; nothing was written")
    header = SnapshotHeader(
        version=SNAPSHOT_VERSION, created_at=now, source=source, entries=len(entries), namespace=namespace
    )
    packer = msgpack.Packer(use_bin_type=True)
    stream.write(
        packer.pack(
            {
                "format": SNAPSHOT_FORMAT,
                "version": header.version,
                "created_at": header.created_at,
                "source": header.source,
                "namespace": header.namespace,
                "entries": header.entries,
            }
        )
    )
    done = 0
    for entry in entries:
        stream.write(packer.pack(_entry_row(entry)))
        done += 1
        if progress is not None and done % 1000 == 0:
            progress(1000)
    if progress is not None and done % 1000:
        progress(done % 1000)
    return header


def _fail(message: str) -> InvalidArgumentError:
    return InvalidArgumentError(f"not a valid authx-epoch snapshot: {message}; nothing was imported")


def _number(value: object, what: str, *, optional: bool = False) -> Optional[float]:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _fail(f"{what} must be a finite number, got {value!r:.40}")
    return float(value)


def _text(value: object, what: str, limit: int, *, optional: bool = False) -> Optional[str]:
    if value is None and optional:
        return None
    if not isinstance(value, str) or len(value) > limit:
        raise _fail(f"{what} must be a string of at most {limit} characters, got {value!r:.40}")
    return value


def _record(row: object, where: str) -> EpochRecord:
    if not isinstance(row, list) or len(row) != 5:
        raise _fail(f"{where}: a record must be a list of 5 fields")
    epoch = row[0]
    if type(epoch) is not int or not 0 <= epoch <= MAX_EPOCH:
        raise _fail(f"{where}: the epoch must be a whole number between 0 and 2**63-1, got {epoch!r:.40}")
    created_at = _number(row[1], f"{where}: created_at")
    assert created_at is not None
    return EpochRecord(
        epoch=epoch,
        created_at=created_at,
        bumped_at=_number(row[2], f"{where}: bumped_at", optional=True),
        reason=_text(row[3], f"{where}: reason", _MAX_REASON, optional=True),
        expires_at=_number(row[4], f"{where}: expires_at", optional=True),
    )


def _generation(value: object, what: str, *, optional: bool = False) -> Optional[int]:
    if value is None and optional:
        return None
    if type(value) is not int or not 0 <= value <= MAX_EPOCH:
        raise _fail(f"{what} must be a whole number between 0 and 2**63-1, got {value!r:.40}")
    return value


def _session(row: object, where: str, version: int) -> SessionRecord:
    # Version 3 added grace_used as a ninth field; version-2 records have not used their grace.
    size = 9 if version >= 3 else 8
    if not isinstance(row, list) or len(row) != size:
        raise _fail(f"{where}: a session record must be a list of {size} fields")
    generation = _generation(row[0], f"{where}: the generation")
    first = _generation(row[1], f"{where}: the first generation")
    assert generation is not None
    assert first is not None
    if first > generation:
        raise _fail(f"{where}: the first generation is after the current one")
    created_at = _number(row[2], f"{where}: created_at")
    expires_at = _number(row[3], f"{where}: expires_at")
    assert created_at is not None
    assert expires_at is not None
    if type(row[7]) is not bool:
        raise _fail(f"{where}: the revoked flag must be true or false, got {row[7]!r:.40}")
    grace_used = row[8] if size == 9 else False
    if type(grace_used) is not bool:
        raise _fail(f"{where}: the grace_used flag must be true or false, got {grace_used!r:.40}")
    return SessionRecord(
        generation=generation,
        first_generation=first,
        created_at=created_at,
        expires_at=expires_at,
        uid=_text(row[4], f"{where}: the session's uid", _MAX_ID, optional=True),
        rotated_at=_number(row[5], f"{where}: rotated_at", optional=True),
        previous=_generation(row[6], f"{where}: the previous generation", optional=True),
        revoked=row[7],
        grace_used=grace_used,
    )


def _entry(row: object, index: int, version: int) -> SnapshotEntry:
    where = f"entry {index}"
    if not isinstance(row, list) or len(row) != 5:
        raise _fail(f"{where} must be a list of 5 fields")
    kind, key, record, expires_at, uid = row
    if not isinstance(kind, str) or kind not in ENTRY_KINDS:
        raise _fail(f"{where} has an unknown kind {kind!r:.40}")
    key_text = _text(key, f"{where}: the key", _MAX_ID)
    assert key_text is not None
    if kind in ("global", "user"):
        if kind == "global" and key_text:
            raise _fail(f"{where}: the global record has an empty key")
        return SnapshotEntry(kind, key_text, record=_record(record, where))
    if not key_text:
        raise _fail(f"{where}: a {kind} needs a non-empty id")
    until = _number(expires_at, f"{where}: expires_at")
    if kind == "session" and version >= 2 and record is not None:
        session = _session(record, where, version)
        if session.expires_at != until:
            raise _fail(f"{where}: expires_at differs from the session record's")
        return SnapshotEntry(kind, key_text, expires_at=until, session=session)
    if kind == "session":
        return SnapshotEntry(kind, key_text, expires_at=until)
    if uid is None:
        raise _fail(
            f"{where}: the revoked token {key_text!r:.40} has no owner, and a revoked jti belongs to one user "
            "(only version-1 snapshots could omit it); export the source again with a current authx-epoch"
        )
    owner = _text(uid, f"{where}: the owner uid", _MAX_ID)
    return SnapshotEntry(kind, key_text, expires_at=until, uid=owner)


def _header(first: object) -> SnapshotHeader:
    if not isinstance(first, dict) or first.get("format") != SNAPSHOT_FORMAT:
        raise InvalidArgumentError(
            "this file is not an authx-epoch snapshot (no snapshot header); nothing was imported. "
            "Make one with 'authx-epoch export FILE'"
        )
    version = first.get("version")
    if type(version) is not int or version < 1:
        raise _fail(f"the header has no valid version ({version!r:.40})")
    if version > SNAPSHOT_VERSION:
        raise InvalidArgumentError(
            f"this snapshot has format version {version}, newer than this authx-epoch reads ({SNAPSHOT_VERSION}); "
            "upgrade authx-epoch to import it; nothing was imported"
        )
    count = first.get("entries")
    if type(count) is not int or count < 0:
        raise _fail("the header does not say how many entries follow")
    created_at = _number(first.get("created_at"), "the header's created_at")
    assert created_at is not None
    source = _text(first.get("source"), "the header's source", 64)
    assert source is not None
    namespace = ""
    if version >= 3:
        try:
            namespace = check_namespace(first.get("namespace", ""))
        except ConfigurationError:
            raise _fail(f"the header's namespace is not a namespace name ({first.get('namespace')!r:.70})") from None
    return SnapshotHeader(version=version, created_at=created_at, source=source, entries=count, namespace=namespace)


def _objects(stream: IO[bytes]) -> Iterator[object]:
    unpacker = msgpack.Unpacker(stream, raw=False, strict_map_key=True, use_list=True)
    try:
        yield from unpacker
    except (ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
        raise _fail(f"the file is damaged ({exc.__class__.__name__})") from exc


def read_snapshot(stream: IO[bytes]) -> tuple[SnapshotHeader, list[SnapshotEntry]]:
    """Read and validate a whole snapshot.

    Every entry is checked before any is returned, so a damaged or foreign file is refused as a
    whole and changes nothing.

    Args:
        stream: A binary file open for reading.

    Returns:
        The header and the entries, in file order.

    Raises:
        InvalidArgumentError: The file is not a snapshot, is of a newer version, is truncated,
            has more entries than its header says, or holds an invalid entry.
    """
    objects = _objects(stream)
    try:
        first = next(objects)
    except StopIteration:
        raise InvalidArgumentError("this file is empty, not an authx-epoch snapshot; nothing was imported") from None
    header = _header(first)
    entries: list[SnapshotEntry] = []
    for index, row in enumerate(objects):
        if index >= header.entries:
            raise _fail(f"it holds more entries than its header says ({header.entries})")
        entries.append(_entry(row, index, header.version))
    if len(entries) != header.entries:
        raise _fail(f"it is truncated: {len(entries)} of {header.entries} entries")
    return header, entries


__all__ = [
    "ENTRY_KINDS",
    "SNAPSHOT_FORMAT",
    "SNAPSHOT_VERSION",
    "SnapshotHeader",
    "read_snapshot",
    "write_snapshot",
]

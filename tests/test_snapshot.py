"""The msgpack snapshot: a round trip through every store, and refusal of everything else."""

from __future__ import annotations

import io
import math
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from authx_epoch import InvalidArgumentError, MemoryStore
from authx_epoch.records import SessionRecord, SnapshotEntry
from authx_epoch.snapshot import SNAPSHOT_FORMAT, SNAPSHOT_VERSION, read_snapshot, write_snapshot
from authx_epoch.stores import Store

NOW = 1_900_000_000.0


def populate(store: Store) -> None:
    sync = store.sync
    sync.setup(NOW - 100)
    sync.issue("alice", NOW - 50, NOW + 900)
    first = sync.issue("alice", NOW - 40, NOW + 900, "alice-laptop").session_generation
    assert first is not None
    sync.rotate_session("alice-laptop", "alice", first, NOW - 30, 5.0, NOW + 1000)
    sync.bump_user("alice", NOW - 10, "password changed", NOW + 3600)
    sync.bump_user("bob", NOW - 5, None, NOW + 3600)
    sync.bump_global(NOW - 1, "key rotation")
    sync.revoke_token("alice", "jti-1", NOW + 600, NOW)
    sync.revoke_session("session-1", NOW + 1200, NOW)
    sync.revoke_session("expired", NOW - 1, NOW - 2)


def key(entry: SnapshotEntry) -> tuple[str, str]:
    return (entry.kind, entry.key)


def dump(entries: list[SnapshotEntry], **options: Any) -> bytes:
    stream = io.BytesIO()
    write_snapshot(stream, entries, source="test", now=NOW, **options)
    return stream.getvalue()


def test_round_trip_through_every_store_keeps_the_audit_trail(store: Store) -> None:
    populate(store)
    exported = sorted(store.sync.export_entries(NOW), key=key)
    assert [key(entry) for entry in exported] == [
        ("global", ""),
        ("session", "alice-laptop"),
        ("session", "session-1"),
        ("token", "jti-1"),
        ("user", "alice"),
        ("user", "bob"),
    ]
    header, read = read_snapshot(io.BytesIO(dump(exported)))
    assert (header.version, header.source, header.entries, header.created_at) == (SNAPSHOT_VERSION, "test", 6, NOW)
    assert header.namespace == ""
    assert sorted(read, key=key) == exported

    target = MemoryStore()
    assert target.import_entries(read, NOW) == 6
    assert sorted(target.export_entries(NOW), key=key) == exported
    # The live session moved whole: its rotation state, owner and expiry, not just an id.
    laptop = target.get_session("alice-laptop", NOW)
    assert laptop is not None
    assert laptop == store.sync.get_session("alice-laptop", NOW)
    assert (laptop.uid, laptop.revoked, laptop.rotated_at) == ("alice", False, NOW - 30)
    assert laptop.previous is not None
    assert laptop.previous < laptop.generation
    alice = target.get_user("alice", NOW)
    assert alice is not None
    assert (alice.reason, alice.bumped_at) == ("password changed", NOW - 10)
    global_ = target.get_global(NOW)
    assert global_ is not None
    assert global_.reason == "key rotation"
    assert target.fetch("alice", "jti-1", "session-1", NOW).jti_revoked


def test_import_never_moves_an_epoch_back(store: Store) -> None:
    populate(store)
    old = dump(list(store.sync.export_entries(NOW)))
    newer = store.sync.bump_user("alice", NOW, "again", NOW + 3600)
    _, entries = read_snapshot(io.BytesIO(old))
    store.sync.import_entries(entries, NOW)
    record = store.sync.get_user("alice", NOW)
    assert record is not None
    assert (record.epoch, record.reason) == (newer.epoch, "again")


def test_progress_is_reported_for_every_entry() -> None:
    entries = [SnapshotEntry("session", f"s{i}", expires_at=NOW) for i in range(2345)]
    steps: list[int] = []
    dump(entries, progress=steps.append)
    assert sum(steps) == 2345
    assert steps[:2] == [1000, 1000]


def header(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "format": SNAPSHOT_FORMAT,
        "version": SNAPSHOT_VERSION,
        "created_at": NOW,
        "source": "x",
        "entries": 1,
    }
    base.update(fields)
    return base


def packed(*objects: Any) -> bytes:
    return b"".join(msgpack.packb(obj, use_bin_type=True) for obj in objects)


GOOD_RECORD = [5, NOW, None, None, NOW + 1]
# generation, first generation, created_at, expires_at, uid, rotated_at, previous, revoked, grace_used
GOOD_SESSION = [5, 3, NOW, NOW + 1, "u", NOW, 4, False, True]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty"),
        (b"\xc1", "damaged"),
        (packed([1, 2, 3]), "not an authx-epoch snapshot"),
        (packed({"format": "other"}), "not an authx-epoch snapshot"),
        (packed(header(version=SNAPSHOT_VERSION + 1)), "newer"),
        (packed(header(version="1")), "no valid version"),
        (packed(header(version=0)), "no valid version"),
        (packed(header(entries=-1)), "how many entries"),
        (packed(header(created_at="yesterday")), "created_at"),
        (packed(header(entries=1)), "truncated"),
        (packed(header(entries=0), ["user", "u", GOOD_RECORD, None, None]), "more entries"),
        (packed(header(), ["robot", "u", GOOD_RECORD, None, None]), "unknown kind"),
        (packed(header(), ["user", "u", GOOD_RECORD, None]), "5 fields"),
        (packed(header(), ["user", 7, GOOD_RECORD, None, None]), "key"),
        (packed(header(), ["user", "u", [2**63, NOW, None, None, None], None, None]), "epoch"),
        (packed(header(), ["user", "u", [True, NOW, None, None, None], None, None]), "epoch"),
        (packed(header(), ["user", "u", [1, NOW, None, "r" * 501, None], None, None]), "reason"),
        (packed(header(), ["user", "u", [1, math.inf, None, None, None], None, None]), "finite"),
        (packed(header(), ["user", "u", None, None, None]), "record"),
        (packed(header(), ["global", "x", GOOD_RECORD, None, None]), "empty key"),
        (packed(header(), ["token", "", None, NOW, "u"]), "non-empty id"),
        (packed(header(), ["token", "j", None, None, "u"]), "expires_at"),
        (packed(header(), ["session", "s", None, math.nan, None]), "finite"),
        (packed(header(), ["token", "j", None, NOW, 5]), "owner uid"),
        (packed(header(), ["session", "", GOOD_SESSION, NOW + 1, None]), "non-empty id"),
        (packed(header(), ["session", "s", GOOD_SESSION[:8], NOW + 1, None]), "9 fields"),
        (packed(header(version=2), ["session", "s", GOOD_SESSION, NOW + 1, None]), "8 fields"),
        (packed(header(), ["session", "s", [*GOOD_SESSION[:8], 1], NOW + 1, None]), "grace_used flag"),
        (packed(header(), ["token", "j", None, NOW, None]), "no owner"),
        (packed(header(version=2), ["token", "j", None, NOW, None]), "no owner"),
        (packed(header(version=1), ["token", "j", None, NOW, None]), "no owner"),
        (packed(header(namespace="no~tilde")), "namespace"),
        (packed(header(namespace=5)), "namespace"),
        (packed(header(), ["session", "s", [2**63, *GOOD_SESSION[1:]], NOW + 1, None]), "generation"),
        (packed(header(), ["session", "s", [5, -1, *GOOD_SESSION[2:]], NOW + 1, None]), "first generation"),
        (packed(header(), ["session", "s", [5, 9, *GOOD_SESSION[2:]], NOW + 1, None]), "after the current"),
        (packed(header(), ["session", "s", [*GOOD_SESSION[:4], 7, *GOOD_SESSION[5:]], NOW + 1, None]), "uid"),
        (packed(header(), ["session", "s", [*GOOD_SESSION[:6], "4", *GOOD_SESSION[7:]], NOW + 1, None]), "previous"),
        (packed(header(), ["session", "s", [*GOOD_SESSION[:7], 1, False], NOW + 1, None]), "revoked flag"),
        (packed(header(), ["session", "s", [*GOOD_SESSION[:3], math.inf, *GOOD_SESSION[4:]], NOW + 1, None]), "finite"),
        (packed(header(), ["session", "s", GOOD_SESSION, NOW + 2, None]), "differs"),
    ],
)
def test_refuses_what_is_not_a_valid_snapshot(content: bytes, message: str) -> None:
    with pytest.raises(InvalidArgumentError, match="nothing was imported") as caught:
        read_snapshot(io.BytesIO(content))
    assert message in str(caught.value)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=512))
def test_arbitrary_bytes_are_read_or_refused_cleanly(content: bytes) -> None:
    try:
        header_, entries = read_snapshot(io.BytesIO(content))
    except InvalidArgumentError:
        return
    assert header_.entries == len(entries)


msgpack_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats()
    | st.text(max_size=20)
    | st.binary(max_size=8),
    lambda children: st.lists(children, max_size=6) | st.dictionaries(st.text(max_size=5), children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300)
@given(st.lists(msgpack_values, max_size=4))
def test_hostile_entries_are_refused_or_valid(rows: list[Any]) -> None:
    content = packed(header(entries=len(rows)), *rows)
    try:
        _, entries = read_snapshot(io.BytesIO(content))
    except InvalidArgumentError:
        return
    # Whatever got through imports into a real store without error.
    assert MemoryStore().import_entries(entries, NOW) == len(entries)


@settings(max_examples=200)
@given(st.dictionaries(st.sampled_from(["version", "entries", "created_at", "source"]), msgpack_values))
def test_hostile_headers_are_refused_or_valid(fields: dict[str, Any]) -> None:
    content = packed({"format": SNAPSHOT_FORMAT, **fields})
    try:
        found, entries = read_snapshot(io.BytesIO(content))
    except InvalidArgumentError:
        return
    assert (found.entries, entries) == (0, [])


def test_a_session_entry_round_trips_every_field() -> None:
    for grace_used in (False, True):
        record = SessionRecord(5, 3, NOW, NOW + 1, "u", NOW, 4, True, grace_used)
        entry = SnapshotEntry("session", "s", expires_at=NOW + 1, session=record)
        _, (read,) = read_snapshot(io.BytesIO(dump([entry])))
        assert read == entry
    assert read_snapshot(io.BytesIO(packed(header(), ["session", "s", GOOD_SESSION, NOW + 1, None])))[1] == [
        SnapshotEntry(
            "session", "s", expires_at=NOW + 1, session=SessionRecord(5, 3, NOW, NOW + 1, "u", NOW, 4, False, True)
        )
    ]


def test_version_2_session_records_read_with_the_grace_unused() -> None:
    content = packed(header(version=2), ["session", "s", GOOD_SESSION[:8], NOW + 1, None])
    header_, (entry,) = read_snapshot(io.BytesIO(content))
    assert (header_.version, header_.namespace) == (2, "")
    assert entry.session == SessionRecord(5, 3, NOW, NOW + 1, "u", NOW, 4, False, False)


def test_the_header_names_the_namespace_the_entries_come_from() -> None:
    stream = io.BytesIO()
    written = write_snapshot(stream, [], source="sqlite", now=NOW, namespace="admin")
    assert written.namespace == "admin"
    read, entries = read_snapshot(io.BytesIO(stream.getvalue()))
    assert (read.namespace, read.version, entries) == ("admin", SNAPSHOT_VERSION, [])
    # Informational: it imports into whatever namespace the importing store works in.
    assert read_snapshot(io.BytesIO(dump([])))[0].namespace == ""


def test_a_revoked_token_without_its_owner_is_never_written() -> None:
    with pytest.raises(InvalidArgumentError, match="no owner"):
        dump([SnapshotEntry("token", "j", expires_at=NOW)])


def test_a_version_1_file_with_an_ownerless_token_is_refused_whole() -> None:
    content = packed(
        header(version=1, entries=2),
        ["user", "alice", [9, NOW - 50, None, None, NOW + 3600], None, None],
        ["token", "jti-1", None, NOW + 600, None],
    )
    with pytest.raises(InvalidArgumentError, match="no owner"):
        read_snapshot(io.BytesIO(content))


# A snapshot as version 1 wrote it: session rows are revoked ids, with no record.
VERSION_1 = packed(
    header(version=1, entries=4, source="sqlite"),
    ["global", "", [7, NOW - 100, None, None, None], None, None],
    ["user", "alice", [9, NOW - 50, NOW - 10, "password changed", NOW + 3600], None, None],
    ["token", "jti-1", None, NOW + 600, "alice"],
    ["session", "session-1", None, NOW + 1200, None],
)


def test_version_1_files_are_still_read_and_imported(store: Store) -> None:
    header_, entries = read_snapshot(io.BytesIO(VERSION_1))
    assert (header_.version, header_.entries) == (1, 4)
    assert entries[3] == SnapshotEntry("session", "session-1", expires_at=NOW + 1200)
    store.sync.issue("bob", NOW, NOW + 900, "session-1")
    assert store.sync.import_entries(entries, NOW) == 4
    # The revoked id revokes the session it names, even one the store already had live.
    session = store.sync.get_session("session-1", NOW)
    assert session is not None
    assert session.revoked
    assert session.expires_at >= NOW + 1200
    assert store.sync.fetch("alice", "jti-1", "session-1", NOW).jti_revoked
    alice = store.sync.get_user("alice", NOW)
    assert alice is not None
    assert (alice.epoch, alice.reason) == (9, "password changed")
    # Exported again, it is written in the current version, with the session's whole record.
    _, again = read_snapshot(io.BytesIO(dump(list(store.sync.export_entries(NOW)))))
    (rewritten,) = [entry for entry in again if entry.kind == "session"]
    assert rewritten.session == session

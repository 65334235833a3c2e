"""Snapshots of one namespace of the file: its live rows as entries, and entries merged into it.

The blocking side of ``Store.export_entries`` and ``Store.import_entries`` (the CLI's export and
import); ``SqliteStore`` opens the connection and turns driver errors into ``StoreUnavailableError``.
"""

from __future__ import annotations

import sqlite3

from authx_epoch.records import SnapshotEntry, merge_records, merge_sessions, revoke_session_record
from authx_epoch.stores.sqlite.schema import (
    GLOBAL_SCOPE,
    PUT_SESSION,
    RECORD_COLUMNS,
    REVOKE_TOKEN,
    SESSION_COLUMNS,
    USER_PREFIX,
    epoch_record,
    read_session,
    session_record,
    session_row,
    write_transaction,
)


def namespace_entries(conn: sqlite3.Connection, ns: str, now: float) -> list[SnapshotEntry]:
    """The live records of namespace ``ns`` as snapshot entries (see ``Store.export_entries``)."""
    records = conn.execute(
        f"SELECT scope, {RECORD_COLUMNS} FROM epochs WHERE ns = ? AND (expires_at IS NULL OR expires_at > ?)",
        (ns, now),
    ).fetchall()
    revoked = conn.execute(
        "SELECT uid, jti, expires_at FROM revoked_tokens WHERE ns = ? AND expires_at > ?", (ns, now)
    ).fetchall()
    sessions = conn.execute(
        f"SELECT id, {SESSION_COLUMNS} FROM sessions WHERE ns = ? AND expires_at > ?", (ns, now)
    ).fetchall()
    entries = [
        SnapshotEntry("global", "", record=epoch_record(row[1:]))
        if row[0] == GLOBAL_SCOPE
        else SnapshotEntry("user", row[0][len(USER_PREFIX) :], record=epoch_record(row[1:]))
        for row in records
    ]
    entries += [SnapshotEntry("token", jti, expires_at=until, uid=uid) for uid, jti, until in revoked]
    for row in sessions:
        session = session_record(row[1:])
        entries.append(SnapshotEntry("session", row[0], expires_at=session.expires_at, session=session))
    return entries


def merge_entries(conn: sqlite3.Connection, ns: str, checked: list[SnapshotEntry], now: float) -> int:
    """Merge checked entries (``owned_entries``) into namespace ``ns`` in one write transaction.

    Returns:
        How many entries were merged (expired and unknown ones are skipped); see ``Store.import_entries``.
    """
    count = 0
    with write_transaction(conn):
        for entry in checked:
            if entry.kind in ("global", "user") and entry.record is not None:
                scope = GLOBAL_SCOPE if entry.kind == "global" else USER_PREFIX + entry.key
                row = conn.execute(
                    f"SELECT {RECORD_COLUMNS} FROM epochs WHERE ns = ? AND scope = ?", (ns, scope)
                ).fetchone()
                merged = merge_records(epoch_record(row) if row else None, entry.record)
                conn.execute(
                    "INSERT OR REPLACE INTO epochs (ns, scope, epoch, created_at, bumped_at, reason, "
                    "expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        ns,
                        scope,
                        merged.epoch,
                        merged.created_at,
                        merged.bumped_at,
                        merged.reason,
                        merged.expires_at,
                    ),
                )
            elif entry.kind == "token" and entry.expires_at is not None and entry.uid is not None:
                params = {"ns": ns, "uid": entry.uid, "jti": entry.key, "expires_at": entry.expires_at}
                conn.execute(REVOKE_TOKEN, params)
            elif entry.kind == "session" and entry.session is not None:
                if not entry.session.is_live(now):
                    continue
                current = read_session(conn, ns, entry.key, now)
                merged_session = merge_sessions(current, entry.session, now)
                conn.execute(PUT_SESSION, session_row(ns, entry.key, merged_session))
            elif entry.kind == "session" and entry.expires_at is not None:
                if entry.expires_at <= now:
                    continue
                current = read_session(conn, ns, entry.key, now, expired_too=True)
                revoked = revoke_session_record(current, now, entry.expires_at)
                conn.execute(PUT_SESSION, session_row(ns, entry.key, revoked))
            else:
                continue
            count += 1
    return count

"""The check's answers on one reader connection, kept while the database file has not changed.

A check reads the same few rows again and again (a user's record, the global record), and a
write is rare next to the reads. ``PRAGMA data_version`` on a connection changes whenever any
other connection, in this process or another, has committed to the file; reading it costs about
a fifth of the check's statement. So each reader connection keeps the rows it read, tagged with
the version read before the statement, and answers from them while the version is unchanged:
the next check after a commit anywhere reads the file again. The guarantee stays exact (a bump
committed by another process is seen by the next check, not within a bound).

The rows are kept as read, unfiltered by time: a check judges liveness at its own ``now``, so a
memo written at one time answers correctly at another.
"""

from __future__ import annotations

import sqlite3
from typing import Any, Optional

from authx_epoch.records import EpochRecord, SessionRecord
from authx_epoch.stores.sqlite.schema import FETCH_CHECK, epoch_record, session_record

#: The most checks kept per reader connection; the oldest goes first.
MAX_ENTRIES = 4096

#: ``(user record, global record, expiry of the revoked jti, session record)``, as stored.
Parts = tuple[Optional[EpochRecord], Optional[EpochRecord], Optional[float], Optional[SessionRecord]]


class CheckMemo:
    """What the check statement answered on one connection, for one ``data_version`` of the file."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        """Keep answers read through ``connection`` (a reader that never writes)."""
        self.connection = connection
        self.version: Any = None
        self.entries: dict[tuple[Any, ...], Parts] = {}

    def get(self, key: tuple[Any, ...]) -> Optional[Parts]:
        """The parts kept for ``key``, if the file has not changed since they were read.

        Reads the file's version first; if another connection has committed since the last read,
        every kept answer is forgotten and this answers ``None``.
        """
        version = self.connection.execute("PRAGMA data_version").fetchone()[0]
        if version != self.version:
            self.entries.clear()
            self.version = version
            return None
        return self.entries.get(key)

    def keep(self, key: tuple[Any, ...], parts: Parts) -> None:
        """Remember ``parts`` for ``key``, read after ``get`` read the version they belong to."""
        entries = self.entries
        if len(entries) >= MAX_ENTRIES:
            del entries[next(iter(entries))]
        entries[key] = parts


def read_parts(conn: sqlite3.Connection, params: dict[str, Any]) -> Optional[Parts]:
    """The check's rows as stored, or ``None`` when the file has no tables (it was replaced by an empty one)."""
    try:
        rows = conn.execute(FETCH_CHECK, params).fetchall()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return None
        raise
    user = global_ = session = None
    jti_until: Optional[float] = None
    for row in rows:
        tag = row[0]
        if tag == "u":
            user = epoch_record(row[1:])
        elif tag == "g":
            global_ = epoch_record(row[1:])
        elif tag == "j":
            jti_until = row[1]
        else:
            session = session_record(row[1:])
    return user, global_, jti_until, session

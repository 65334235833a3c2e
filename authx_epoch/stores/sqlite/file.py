"""One database file and this process's connections to it: per thread, a reader and a writer.

Each connection is opened in WAL mode with ``synchronous=FULL``, its schema checked (and, by the
writer, upgraded: see ``schema``), and reopened when the file at the path is replaced. A forked
child forgets its parent's connections and opens its own.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
import weakref
from typing import Optional

from authx_epoch.errors import ConfigurationError, StoreUnavailableError
from authx_epoch.stores.sqlite.memo import CheckMemo
from authx_epoch.stores.sqlite.schema import SCHEMA_VERSION, table_names, upgrade, user_version, write_transaction


class DatabaseFile:
    """One database file and the connections this process holds to it (per thread, reader and writer).

    Shared by a ``SqliteStore`` and every namespace view of it.
    """

    def __init__(self, path: str, read_timeout: float, write_timeout: float) -> None:
        self.path = path
        self.read_timeout = read_timeout
        self.write_timeout = write_timeout
        self.local = threading.local()
        self.lock = threading.Lock()
        self.connections: list[sqlite3.Connection] = []
        _FILES.add(self)

    def forget_after_fork(self) -> None:
        """In a forked child: the parent's connections must never be used (nor closed) here."""
        self.local = threading.local()
        self.lock = threading.Lock()
        self.connections = []

    def _identity(self) -> Optional[tuple[int, int]]:
        try:
            stat = os.stat(self.path)
        except OSError:
            return None
        return (stat.st_dev, stat.st_ino)

    def connection(self, *, write: bool) -> sqlite3.Connection:
        """This thread's writer (or reader), opened (or reopened, if the file was replaced) as needed.

        Raises:
            StoreUnavailableError: The file cannot be opened now, or is missing while its write-ahead log is not.
            ConfigurationError: The file was written by a newer authx-epoch.
        """
        slot = "writer" if write else "reader"
        conn: Optional[sqlite3.Connection] = getattr(self.local, slot, None)
        identity = self._identity()
        # A file deleted or replaced under a live connection would leave this process reading
        # state no other process sees; reopen so that every process shares one file again.
        if conn is not None and identity is not None and identity == getattr(self.local, slot + "_id", None):
            return conn
        if conn is not None:
            self.drop(conn)
            # Forget it before reopening: if the reopen fails and the original file comes back,
            # the identity would match again and the closed connection would be handed out forever.
            setattr(self.local, slot, None)
        if identity is None and os.path.exists(self.path + "-wal"):
            # The file is gone but its write-ahead log is not: the file was moved or deleted alone.
            # A fresh file created now would be paired with that log, and closing it would fold the
            # log into the fresh file and delete it, so the file, once put back, would have lost its
            # latest writes: a bump undone, revoked tokens accepted again. Refuse (a 503) instead.
            raise StoreUnavailableError(
                f"SQLite store {self.path!r} is missing but its write-ahead log is still there: put the "
                "database file back, or remove its '-wal' and '-shm' files too to start over with an empty store"
            )
        try:
            conn = sqlite3.connect(
                self.path,
                timeout=self.write_timeout if write else self.read_timeout,
                isolation_level=None,
                check_same_thread=False,
            )
        except sqlite3.Error as exc:
            raise StoreUnavailableError(f"SQLite store {self.path!r} cannot be opened: {exc}") from exc
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            if self._prepare(conn, write=write):
                # An old file opened for reading: the writer connection upgrades it first.
                self.connection(write=True)
        except BaseException as exc:
            conn.close()
            if isinstance(exc, sqlite3.Error):
                raise StoreUnavailableError(f"SQLite store {self.path!r} cannot be opened: {exc}") from exc
            raise
        setattr(self.local, slot, conn)
        setattr(self.local, slot + "_id", self._identity())
        if not write:
            self.local.memo = CheckMemo(conn)
        with self.lock:
            self.connections.append(conn)
        return conn

    def _prepare(self, conn: sqlite3.Connection, *, write: bool) -> bool:
        """Check (and with the writer, upgrade) the schema; return whether a reader needs the writer to upgrade."""
        version = user_version(conn)
        if version == SCHEMA_VERSION:
            return False
        self._known(version)
        if not write:
            # An empty file (deleted and recreated under a live store) has no tables: reads find
            # nothing, which is lost state (a rejection). A version-0 file with tables needs the upgrade.
            return bool(table_names(conn))
        with write_transaction(conn):
            # Another process may have upgraded the file while this one waited for the lock.
            version = user_version(conn)
            if version != SCHEMA_VERSION:
                self._known(version)
                upgrade(conn, time.time())
        return False

    def _known(self, version: int) -> None:
        if version not in (0, SCHEMA_VERSION):
            # Not an outage that passes: refused at once at start-up, a 503 if met later.
            raise ConfigurationError(
                f"SQLite store {self.path!r} has schema version {version}, which this authx-epoch does not read "
                f"(it reads 0 and {SCHEMA_VERSION}): it was written by a newer authx-epoch; upgrade this one"
            )

    def check_memo(self) -> CheckMemo:
        """This thread's reader, with the check answers kept on it (new whenever the reader is reopened).

        Raises:
            StoreUnavailableError: As ``connection``.
        """
        conn = self.connection(write=False)
        memo: CheckMemo = self.local.memo
        assert memo.connection is conn  # both are set together when the reader opens
        return memo

    def drop(self, conn: sqlite3.Connection) -> None:
        """Close one connection and forget it."""
        with self.lock:
            if conn in self.connections:
                self.connections.remove(conn)
        conn.close()

    def close(self) -> None:
        """Close every connection to the file, in every thread."""
        with self.lock:
            connections, self.connections = self.connections, []
        for conn in connections:
            conn.close()
        self.local = threading.local()


_FILES: weakref.WeakSet[DatabaseFile] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    # A worker forked after the app was imported (gunicorn --preload) opens connections of its own.
    for file in list(_FILES):
        file.forget_after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)

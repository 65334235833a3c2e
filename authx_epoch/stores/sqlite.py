"""``sqlite:///PATH``: the embedded default. Durable, and shared by every worker process of one machine.

The file is opened in WAL mode, so checks (reads) never wait for a bump (write) of another
process. Writes are single atomic statements (``INSERT ... ON CONFLICT DO UPDATE ... RETURNING``),
so concurrent bumps from several processes never lose an increment. ``synchronous=FULL``: a bump
that has returned survives a power cut, because a lost bump would bring revoked tokens back.
Expired rows are ignored by every read and deleted a few at a time by writes (of any namespace:
an expired row is invisible to every reader, so no abandoned namespace keeps rows forever).

Schema version 2 (``PRAGMA user_version``): every table has a ``ns`` column, part of every
primary key, so several namespaces share one file without sharing a row; a revoked jti is keyed
by ``(ns, uid, jti)``. A file written before (version 0) is upgraded once, in one transaction,
when a process first opens it: every row goes to the root namespace ``''``. The upgrade holds the
write lock and checks the version again inside it, so processes opening the file together
upgrade it exactly once. Revoked jtis recorded without their owner cannot be kept per user: if
the upgrade finds unexpired ones, it bumps the root namespace's global epoch (everyone logs in
again; nothing revoked comes back) and logs a warning. Processes of an older authx-epoch cannot
read an upgraded file: upgrade every process that shares it together.
"""

from __future__ import annotations

import copy
import logging
import math
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, Optional, TypeVar

from authx_epoch.errors import ConfigurationError, StoreUnavailableError
from authx_epoch.records import (
    RECORD_SLACK,
    CheckState,
    EpochRecord,
    RotationOutcome,
    SessionRecord,
    SnapshotEntry,
    Stamps,
    StoreStats,
    clock_epoch,
    ensure_session,
    merge_records,
    merge_sessions,
    owned_entries,
    revoke_session_record,
    rotate,
)
from authx_epoch.stores.contract import Store
from authx_epoch.stores.namespaces import ROOT_NAMESPACE, check_namespace

_T = TypeVar("_T")

logger = logging.getLogger("authx_epoch")

#: The schema version this module writes (``PRAGMA user_version``); files at 0 are upgraded to it.
SCHEMA_VERSION = 2

_GLOBAL = "g"
_USER = "u:"
_SWEEP = 64

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS epochs (
    ns TEXT NOT NULL,
    scope TEXT NOT NULL,
    epoch INTEGER NOT NULL,
    created_at REAL NOT NULL,
    bumped_at REAL,
    reason TEXT,
    expires_at REAL,
    PRIMARY KEY (ns, scope)
) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS epochs_expiry ON epochs (expires_at) WHERE expires_at IS NOT NULL",
    """CREATE TABLE IF NOT EXISTS revoked_tokens (
    ns TEXT NOT NULL,
    uid TEXT NOT NULL,
    jti TEXT NOT NULL,
    expires_at REAL NOT NULL,
    PRIMARY KEY (ns, uid, jti)
) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS revoked_tokens_expiry ON revoked_tokens (expires_at)",
    """CREATE TABLE IF NOT EXISTS sessions (
    ns TEXT NOT NULL,
    id TEXT NOT NULL,
    generation INTEGER NOT NULL,
    first_generation INTEGER NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    uid TEXT,
    rotated_at REAL,
    previous INTEGER,
    revoked INTEGER NOT NULL DEFAULT 0,
    grace_used INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (ns, id)
) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS sessions_expiry ON sessions (expires_at)",
)

#: The tables and indexes of version-0 files (before namespaces).
_OLD_TABLES = ("epochs", "revoked", "sessions")
_OLD_INDEXES = ("epochs_expiry", "revoked_expiry", "sessions_expiry")

_SESSION = "generation, first_generation, created_at, expires_at, uid, rotated_at, previous, revoked, grace_used"

_RECORD = "epoch, created_at, bumped_at, reason, expires_at"

# One statement answers a whole check: the user record, the global record, the revoked jti and
# the session record (padded to the session row's nine columns).
_FETCH = f"""
SELECT 'u', {_RECORD}, 0, 0, 0, 0 FROM epochs
    WHERE ns = :ns AND scope = :user AND (expires_at IS NULL OR expires_at > :now)
UNION ALL SELECT 'g', {_RECORD}, 0, 0, 0, 0 FROM epochs WHERE ns = :ns AND scope = 'g'
UNION ALL SELECT 'j', 0, 0, 0, 0, 0, 0, 0, 0, 0 FROM revoked_tokens
    WHERE ns = :ns AND uid = :uid AND jti = :jti AND expires_at > :now
UNION ALL SELECT 's', {_SESSION} FROM sessions WHERE ns = :ns AND id = :sid AND expires_at > :now
"""

_BUMP = f"""
INSERT INTO epochs (ns, scope, epoch, created_at, bumped_at, reason, expires_at)
VALUES (:ns, :scope, :clock, :now, :now, :reason, :expires_at)
ON CONFLICT (ns, scope) DO UPDATE SET
    epoch = max(epochs.epoch + 1, excluded.epoch),
    bumped_at = excluded.bumped_at,
    reason = excluded.reason,
    expires_at = max(coalesce(epochs.expires_at, 0), excluded.expires_at)
RETURNING {_RECORD}
"""

# An expired row counts as missing: it is recreated (moving forward, never reusing its epoch),
# not extended, exactly as if the lazy purge had already deleted it.
_ENSURE_USER = f"""
INSERT INTO epochs (ns, scope, epoch, created_at, expires_at) VALUES (:ns, :scope, :clock, :now, :expires_at)
ON CONFLICT (ns, scope) DO UPDATE SET
    epoch = CASE WHEN epochs.expires_at <= excluded.created_at
        THEN max(epochs.epoch + 1, excluded.epoch) ELSE epochs.epoch END,
    created_at = CASE WHEN epochs.expires_at <= excluded.created_at
        THEN excluded.created_at ELSE epochs.created_at END,
    bumped_at = CASE WHEN epochs.expires_at <= excluded.created_at THEN NULL ELSE epochs.bumped_at END,
    reason = CASE WHEN epochs.expires_at <= excluded.created_at THEN NULL ELSE epochs.reason END,
    expires_at = max(coalesce(epochs.expires_at, 0), excluded.expires_at)
RETURNING {_RECORD}
"""

_ENSURE_GLOBAL = (
    "INSERT INTO epochs (ns, scope, epoch, created_at) VALUES (:ns, 'g', :clock, :now) "
    "ON CONFLICT (ns, scope) DO NOTHING"
)

_REVOKE_TOKEN = """
INSERT INTO revoked_tokens (ns, uid, jti, expires_at) VALUES (:ns, :uid, :jti, :expires_at)
ON CONFLICT (ns, uid, jti) DO UPDATE SET expires_at = max(revoked_tokens.expires_at, excluded.expires_at)
"""

_PURGE = (
    "DELETE FROM revoked_tokens WHERE (ns, uid, jti) IN "
    "(SELECT ns, uid, jti FROM revoked_tokens WHERE expires_at <= :now LIMIT :n)",
    "DELETE FROM epochs WHERE (ns, scope) IN (SELECT ns, scope FROM epochs WHERE expires_at <= :now LIMIT :n)",
    "DELETE FROM sessions WHERE (ns, id) IN (SELECT ns, id FROM sessions WHERE expires_at <= :now LIMIT :n)",
)

_GET_SESSION = f"SELECT {_SESSION} FROM sessions WHERE ns = ? AND id = ? AND expires_at > ?"
_PUT_SESSION = f"INSERT OR REPLACE INTO sessions (ns, id, {_SESSION}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"


def _unstorable(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _record(row: tuple[Any, ...]) -> EpochRecord:
    return EpochRecord(epoch=row[0], created_at=row[1], bumped_at=row[2], reason=row[3], expires_at=row[4])


def _session(row: tuple[Any, ...]) -> SessionRecord:
    return SessionRecord(
        generation=row[0],
        first_generation=row[1],
        created_at=row[2],
        expires_at=row[3],
        uid=row[4],
        rotated_at=row[5],
        previous=row[6],
        revoked=bool(row[7]),
        grace_used=bool(row[8]),
    )


def _session_row(ns: str, session_id: str, record: SessionRecord) -> tuple[Any, ...]:
    return (
        ns,
        session_id,
        record.generation,
        record.first_generation,
        record.created_at,
        record.expires_at,
        record.uid,
        record.rotated_at,
        record.previous,
        int(record.revoked),
        int(record.grace_used),
    )


def _user_version(conn: sqlite3.Connection) -> int:
    version: int = conn.execute("PRAGMA user_version").fetchone()[0]
    return version


def _tables(conn: sqlite3.Connection) -> set[str]:
    return {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def _upgrade(conn: sqlite3.Connection, now: float) -> None:
    """Bring a version-0 file (or an empty one) to ``SCHEMA_VERSION``, inside the caller's write transaction."""
    old = [name for name in _OLD_TABLES if name in _tables(conn)]
    for index in _OLD_INDEXES:
        conn.execute(f"DROP INDEX IF EXISTS {index}")
    for name in old:
        conn.execute(f"ALTER TABLE {name} RENAME TO _v0_{name}")
    for statement in _SCHEMA:
        conn.execute(statement)
    if "epochs" in old:
        conn.execute(
            "INSERT INTO epochs (ns, scope, epoch, created_at, bumped_at, reason, expires_at) "
            "SELECT '', scope, epoch, created_at, bumped_at, reason, expires_at FROM _v0_epochs"
        )
    if "sessions" in old:
        conn.execute(
            "INSERT INTO sessions (ns, id, generation, first_generation, created_at, expires_at, uid, rotated_at, "
            "previous, revoked) SELECT '', id, generation, first_generation, created_at, expires_at, uid, "
            "rotated_at, previous, revoked FROM _v0_sessions"
        )
    if "revoked" in old:
        columns = {row[1] for row in conn.execute("PRAGMA table_info(_v0_revoked)")}
        # The first files kept no owner at all.
        owner = "uid" if "uid" in columns else "NULL"
        # Files written before session records existed kept revoked session ids here: they become
        # revoked session records, so no revocation is forgotten by the upgrade.
        conn.execute(
            "INSERT INTO sessions (ns, id, generation, first_generation, created_at, expires_at, revoked) "
            "SELECT '', id, 0, 0, 0, expires_at, 1 FROM _v0_revoked WHERE kind = 's' "
            "ON CONFLICT (ns, id) DO UPDATE SET revoked = 1, expires_at = max(sessions.expires_at, excluded.expires_at)"
        )
        conn.execute(
            f"INSERT INTO revoked_tokens (ns, uid, jti, expires_at) SELECT '', {owner}, id, expires_at "
            f"FROM _v0_revoked WHERE kind = 'j' AND {owner} IS NOT NULL"
        )
        ownerless = conn.execute(
            f"SELECT count(*) FROM _v0_revoked WHERE kind = 'j' AND {owner} IS NULL AND expires_at > ?", (now,)
        ).fetchone()[0]
        if ownerless:
            # A revoked jti is per user now; one without its owner cannot be kept under that rule.
            # Loss must be rejection, never acceptance: every token stamped before is refused.
            reason = f"store upgrade: {ownerless} revoked token ids had no owner"
            params = {"ns": ROOT_NAMESPACE, "scope": _GLOBAL, "clock": clock_epoch(now), "now": now}
            conn.execute(_BUMP, {**params, "reason": reason, "expires_at": None}).fetchall()
            logger.warning(
                "SQLite store upgrade: %d unexpired revoked token ids had no owner and cannot be kept per user; "
                "the global epoch was bumped, so every user logs in again and no revoked token comes back",
                ownerless,
            )
    for name in old:
        conn.execute(f"DROP TABLE _v0_{name}")
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


class _File:
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
        with self.lock:
            self.connections.append(conn)
        return conn

    def _prepare(self, conn: sqlite3.Connection, *, write: bool) -> bool:
        """Check (and with the writer, upgrade) the schema; return whether a reader needs the writer to upgrade."""
        version = _user_version(conn)
        if version == SCHEMA_VERSION:
            return False
        self._known(version)
        if not write:
            # An empty file (deleted and recreated under a live store) has no tables: reads find
            # nothing, which is lost state (a rejection). A version-0 file with tables needs the upgrade.
            return bool(_tables(conn))
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Another process may have upgraded the file while this one waited for the lock.
            version = _user_version(conn)
            if version != SCHEMA_VERSION:
                self._known(version)
                _upgrade(conn, time.time())
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return False

    def _known(self, version: int) -> None:
        if version not in (0, SCHEMA_VERSION):
            # Not an outage that passes: refused at once at start-up, a 503 if met later.
            raise ConfigurationError(
                f"SQLite store {self.path!r} has schema version {version}, which this authx-epoch does not read "
                f"(it reads 0 and {SCHEMA_VERSION}): it was written by a newer authx-epoch; upgrade this one"
            )

    def drop(self, conn: sqlite3.Connection) -> None:
        with self.lock:
            if conn in self.connections:
                self.connections.remove(conn)
        conn.close()

    def close(self) -> None:
        with self.lock:
            connections, self.connections = self.connections, []
        for conn in connections:
            conn.close()
        self.local = threading.local()


_FILES: weakref.WeakSet[_File] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    # A worker forked after the app was imported (gunicorn --preload) opens connections of its own.
    for file in list(_FILES):
        file.forget_after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)


class SqliteStore(Store):
    """A store in one SQLite file, shared by every process that opens the same path.

    Args:
        path: The database file; it is created (with its tables) if missing, and upgraded if
            written by an older authx-epoch (see the module docs).
        read_timeout: Seconds a check waits for a lock held elsewhere before failing (then
            the request gets a 503 in fail-closed mode). Kept short: checks run on the event loop.
        write_timeout: Seconds a bump or revoke waits for another writer.
        namespace: The namespace this object works in (``""``: the root).

    Raises:
        ConfigurationError: The file cannot be opened or created, or was written by a newer version.
    """

    kind = "sqlite"
    #: A write may wait on another process's lock: the async side runs writes in a worker thread.
    offload_writes = True

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        read_timeout: float = 0.25,
        write_timeout: float = 5.0,
        namespace: str = ROOT_NAMESPACE,
    ) -> None:
        """Open (creating or upgrading if needed) the database at ``path``."""
        self.path = os.fspath(path)
        if not self.path or self.path == ":memory:":
            raise ConfigurationError(
                "sqlite needs a file path, e.g. sqlite:///authx-epoch.db; use memory:// for a store in memory"
            )
        self._namespace = check_namespace(namespace)
        self._file = _File(self.path, read_timeout, write_timeout)
        self._owns_file = True
        # Both connections are opened now, the same way in every worker. A file that cannot be
        # opened now (a volume not mounted yet, a file being restored) is no reason not to start:
        # the store answers StoreUnavailableError (a 503) and tries again at every use.
        try:
            self._connection(write=True)
            self._connection(write=False)
        except StoreUnavailableError as exc:
            cause = exc.__cause__ if exc.__cause__ is not None else exc
            logger.error(
                "authx-epoch: the SQLite store at %r cannot be opened now (%s); requests that need it answer "
                "503 until it can. Check that the directory exists and is writable by this process",
                self.path,
                cause,
            )

    @property
    def namespace(self) -> str:
        """The namespace this object works in (``""``: the root)."""
        return self._namespace

    @property
    def location(self) -> str:
        """``sqlite:////absolute/path.db``: the file's real path (symbolic links resolved)."""
        return "sqlite:///" + os.path.realpath(self.path)

    def with_namespace(self, namespace: str) -> Store:
        """A view of the same file in ``namespace``, sharing this object's connections; see ``Store``."""
        view = copy.copy(self)
        view._namespace = check_namespace(namespace)
        view._owns_file = False
        return view

    # -- connections -----------------------------------------------------------------------

    def _connection(self, *, write: bool) -> sqlite3.Connection:
        return self._file.connection(write=write)

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise StoreUnavailableError(f"SQLite store {self.path!r} is unavailable: {exc}") from exc

    # -- the contract ----------------------------------------------------------------------

    def setup(self, now: float) -> EpochRecord:
        """See ``Store.setup``."""
        ns = self._namespace
        with self._errors():
            conn = self._connection(write=True)
            conn.execute(_ENSURE_GLOBAL, {"ns": ns, "clock": clock_epoch(now), "now": now})
            row = conn.execute(f"SELECT {_RECORD} FROM epochs WHERE ns = ? AND scope = 'g'", (ns,)).fetchone()
        return _record(row)

    def fetch(self, uid: str, jti: Optional[str], session_id: Optional[str], now: float) -> CheckState:
        """See ``Store.fetch``."""
        params: dict[str, Any] = {
            "ns": self._namespace,
            "user": _USER + uid,
            "uid": uid,
            "jti": jti,
            "sid": session_id,
            "now": now,
        }
        try:
            rows = self._fetch_rows(params)
        except UnicodeEncodeError:
            # An id holding a lone surrogate (JSON allows "\ud800" in an unverified token) cannot be
            # written to SQLite, so nothing is stored under it: look it up as absent.
            rows = self._fetch_rows({key: None if _unstorable(value) else value for key, value in params.items()})
        if rows is None:
            # The file was replaced by an empty one: every record is lost, which means rejection.
            return CheckState(user=None, global_=None)
        user = global_ = session = None
        jti_revoked = False
        for row in rows:
            tag = row[0]
            if tag == "u":
                user = _record(row[1:])
            elif tag == "g":
                global_ = _record(row[1:])
            elif tag == "j":
                jti_revoked = True
            else:
                session = _session(row[1:])
        return CheckState(user, global_, jti_revoked, session is not None and session.revoked, session)

    def _fetch_rows(self, params: dict[str, Any]) -> Optional[list[Any]]:
        try:
            rows: list[Any] = self._connection(write=False).execute(_FETCH, params).fetchall()
        except sqlite3.OperationalError as exc:
            if "no such table" not in str(exc):
                raise StoreUnavailableError(f"SQLite store {self.path!r} is unavailable: {exc}") from exc
            return None
        except sqlite3.Error as exc:
            raise StoreUnavailableError(f"SQLite store {self.path!r} is unavailable: {exc}") from exc
        return rows

    def issue(self, uid: str, now: float, expires_at: float, session_id: Optional[str] = None) -> Stamps:
        """See ``Store.issue``."""
        ns = self._namespace
        scope = _USER + uid
        extend_to = expires_at + RECORD_SLACK
        with self._errors():
            conn = self._connection(write=True)
            rows = conn.execute(
                f"SELECT scope, {_RECORD} FROM epochs WHERE ns = :ns AND scope IN (:scope, 'g')",
                {"ns": ns, "scope": scope},
            ).fetchall()
            found = {row[0]: _record(row[1:]) for row in rows}
            user, global_ = found.get(scope), found.get(_GLOBAL)
            session = self._get_session(conn, session_id, now) if session_id is not None else None
            if (
                global_ is not None
                and user is not None
                and user.expires_at is not None
                and user.expires_at >= expires_at
                and (session_id is None or ensure_session(session, uid, now, expires_at, extend_to) is None)
            ):
                generation = session.generation if session is not None else None
                return Stamps(user_epoch=user.epoch, global_epoch=global_.epoch, session_generation=generation)
            conn.execute("BEGIN IMMEDIATE")
            try:
                changed = None
                if session_id is not None:
                    # Read again inside the write transaction: another process may have moved it.
                    # Before any write: a session of another user refuses the whole mint.
                    session = self._get_session(conn, session_id, now, expired_too=True)
                    changed = ensure_session(session, uid, now, expires_at, extend_to)
                conn.execute(_ENSURE_GLOBAL, {"ns": ns, "clock": clock_epoch(now), "now": now})
                user_row = conn.execute(
                    _ENSURE_USER,
                    {"ns": ns, "scope": scope, "clock": clock_epoch(now), "now": now, "expires_at": extend_to},
                ).fetchall()[0]
                global_row = conn.execute("SELECT epoch FROM epochs WHERE ns = ? AND scope = 'g'", (ns,)).fetchone()
                generation = None
                if session_id is not None:
                    if changed is not None:
                        conn.execute(_PUT_SESSION, _session_row(ns, session_id, changed))
                        session = changed
                    assert session is not None
                    generation = session.generation
                self._purge(conn, now)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return Stamps(user_epoch=user_row[0], global_epoch=global_row[0], session_generation=generation)

    def _get_session(
        self, conn: sqlite3.Connection, session_id: str, now: float, *, expired_too: bool = False
    ) -> Optional[SessionRecord]:
        row = conn.execute(_GET_SESSION, (self._namespace, session_id, -math.inf if expired_too else now)).fetchone()
        return _session(row) if row is not None else None

    def _update_session(
        self,
        session_id: str,
        now: float,
        change: Callable[[Optional[SessionRecord]], tuple[_T, Optional[SessionRecord]]],
    ) -> _T:
        """Read a session record, compute its change and write it, in one write transaction."""
        with self._errors():
            conn = self._connection(write=True)
            conn.execute("BEGIN IMMEDIATE")
            try:
                result, write = change(self._get_session(conn, session_id, now, expired_too=True))
                if write is not None:
                    conn.execute(_PUT_SESSION, _session_row(self._namespace, session_id, write))
                    self._purge(conn, now)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return result

    def rotate_session(
        self, session_id: str, uid: str, presented_generation: int, now: float, grace: float, expires_at: float
    ) -> RotationOutcome:
        """See ``Store.rotate_session``."""
        return self._update_session(
            session_id, now, lambda record: rotate(record, uid, presented_generation, now, grace, expires_at)
        )

    def get_session(self, session_id: str, now: float) -> Optional[SessionRecord]:
        """See ``Store.get_session``."""
        try:
            return self._get_session(self._connection(write=False), session_id, now)
        except sqlite3.OperationalError as exc:
            if "no such table" not in str(exc):
                raise StoreUnavailableError(f"SQLite store {self.path!r} is unavailable: {exc}") from exc
            # The file was replaced by an empty one (as in fetch): the record is lost, not unreachable.
            return None
        except sqlite3.Error as exc:
            raise StoreUnavailableError(f"SQLite store {self.path!r} is unavailable: {exc}") from exc

    def _bump(self, scope: str, now: float, reason: Optional[str], expires_at: Optional[float]) -> EpochRecord:
        params = {
            "ns": self._namespace,
            "scope": scope,
            "clock": clock_epoch(now),
            "now": now,
            "reason": reason,
            "expires_at": expires_at,
        }
        with self._errors():
            conn = self._connection(write=True)
            # fetchall: a RETURNING statement holds its write lock until it is stepped to the end.
            row = conn.execute(_BUMP, params).fetchall()[0]
        return _record(row)

    def bump_user(self, uid: str, now: float, reason: Optional[str], expires_at: float) -> EpochRecord:
        """See ``Store.bump_user``."""
        return self._bump(_USER + uid, now, reason, expires_at)

    def bump_global(self, now: float, reason: Optional[str]) -> EpochRecord:
        """See ``Store.bump_global``."""
        return self._bump(_GLOBAL, now, reason, None)

    def revoke_token(self, uid: str, jti: str, expires_at: float, now: float) -> None:
        """See ``Store.revoke_token``."""
        with self._errors():
            conn = self._connection(write=True)
            conn.execute(_REVOKE_TOKEN, {"ns": self._namespace, "uid": uid, "jti": jti, "expires_at": expires_at})
            self._purge(conn, now)

    def revoke_session(self, session_id: str, expires_at: float, now: float, uid: Optional[str] = None) -> bool:
        """See ``Store.revoke_session``."""

        def revoke(record: Optional[SessionRecord]) -> tuple[bool, SessionRecord]:
            known = record is not None and record.is_live(now)
            return known, revoke_session_record(record, now, expires_at, uid)

        return self._update_session(session_id, now, revoke)

    def get_user(self, uid: str, now: float) -> Optional[EpochRecord]:
        """See ``Store.get_user``."""
        return self.fetch(uid, None, None, now).user

    def get_global(self, now: float) -> Optional[EpochRecord]:
        """See ``Store.get_global``."""
        return self.fetch("", None, None, now).global_

    def stats(self, now: float) -> StoreStats:
        """See ``Store.stats``."""
        ns = self._namespace
        with self._errors():
            conn = self._connection(write=True)
            users = conn.execute(
                "SELECT count(*) FROM epochs WHERE ns = ? AND scope != 'g' AND expires_at > ?", (ns, now)
            ).fetchone()[0]
            tokens = conn.execute(
                "SELECT count(*) FROM revoked_tokens WHERE ns = ? AND expires_at > ?", (ns, now)
            ).fetchone()[0]
            sessions, revoked_sessions = conn.execute(
                "SELECT count(*), coalesce(sum(revoked), 0) FROM sessions WHERE ns = ? AND expires_at > ?", (ns, now)
            ).fetchone()
        return StoreStats(
            kind=self.kind, users=users, revoked_tokens=tokens, revoked_sessions=revoked_sessions, sessions=sessions
        )

    def export_entries(self, now: float) -> list[SnapshotEntry]:
        """See ``Store.export_entries``."""
        ns = self._namespace
        with self._errors():
            conn = self._connection(write=True)
            records = conn.execute(
                f"SELECT scope, {_RECORD} FROM epochs WHERE ns = ? AND (expires_at IS NULL OR expires_at > ?)",
                (ns, now),
            ).fetchall()
            revoked = conn.execute(
                "SELECT uid, jti, expires_at FROM revoked_tokens WHERE ns = ? AND expires_at > ?", (ns, now)
            ).fetchall()
            sessions = conn.execute(
                f"SELECT id, {_SESSION} FROM sessions WHERE ns = ? AND expires_at > ?", (ns, now)
            ).fetchall()
        entries = [
            SnapshotEntry("global", "", record=_record(row[1:]))
            if row[0] == _GLOBAL
            else SnapshotEntry("user", row[0][len(_USER) :], record=_record(row[1:]))
            for row in records
        ]
        entries += [SnapshotEntry("token", jti, expires_at=until, uid=uid) for uid, jti, until in revoked]
        for row in sessions:
            session = _session(row[1:])
            entries.append(SnapshotEntry("session", row[0], expires_at=session.expires_at, session=session))
        return entries

    def import_entries(self, entries: Iterable[SnapshotEntry], now: float) -> int:
        """See ``Store.import_entries``."""
        ns = self._namespace
        checked = owned_entries(entries)
        count = 0
        with self._errors():
            conn = self._connection(write=True)
            conn.execute("BEGIN IMMEDIATE")
            try:
                for entry in checked:
                    if entry.kind in ("global", "user") and entry.record is not None:
                        scope = _GLOBAL if entry.kind == "global" else _USER + entry.key
                        row = conn.execute(
                            f"SELECT {_RECORD} FROM epochs WHERE ns = ? AND scope = ?", (ns, scope)
                        ).fetchone()
                        merged = merge_records(_record(row) if row else None, entry.record)
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
                        conn.execute(_REVOKE_TOKEN, params)
                    elif entry.kind == "session" and entry.session is not None:
                        if not entry.session.is_live(now):
                            continue
                        current = self._get_session(conn, entry.key, now)
                        merged_session = merge_sessions(current, entry.session, now)
                        conn.execute(_PUT_SESSION, _session_row(ns, entry.key, merged_session))
                    elif entry.kind == "session" and entry.expires_at is not None:
                        if entry.expires_at <= now:
                            continue
                        current = self._get_session(conn, entry.key, now, expired_too=True)
                        revoked = revoke_session_record(current, now, entry.expires_at)
                        conn.execute(_PUT_SESSION, _session_row(ns, entry.key, revoked))
                    else:
                        continue
                    count += 1
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return count

    def wipe(self) -> None:
        """See ``Store.wipe`` (this namespace only)."""
        ns = self._namespace
        with self._errors():
            conn = self._connection(write=True)
            conn.execute("BEGIN IMMEDIATE")
            try:
                for table in ("epochs", "revoked_tokens", "sessions"):
                    conn.execute(f"DELETE FROM {table} WHERE ns = ?", (ns,))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    def close(self) -> None:
        """Close every connection this store opened, in every thread (nothing for a namespace view)."""
        if self._owns_file:
            self._file.close()

    def _purge(self, conn: sqlite3.Connection, now: float) -> None:
        for statement in _PURGE:
            conn.execute(statement, {"now": now, "n": _SWEEP})

"""``sqlite:///PATH``: the embedded default. Durable, and shared by every worker process of one machine.

The file is opened in WAL mode, so checks (reads) never wait for a bump (write) of another
process. Writes are single atomic statements (``INSERT ... ON CONFLICT DO UPDATE ... RETURNING``),
so concurrent bumps from several processes never lose an increment. ``synchronous=FULL``: a bump
that has returned survives a power cut, because a lost bump would bring revoked tokens back.
Expired rows are ignored by every read and deleted a few at a time by writes.
"""

from __future__ import annotations

import math
import os
import sqlite3
import threading
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
    revoke_session_record,
    rotate,
)
from authx_epoch.stores.base import AsyncFromSync, AsyncStore, SyncStore

_T = TypeVar("_T")

_GLOBAL = "g"
_USER = "u:"
_TOKEN = "j"
_SWEEP = 64

_SCHEMA = """
CREATE TABLE IF NOT EXISTS epochs (
    scope TEXT PRIMARY KEY,
    epoch INTEGER NOT NULL,
    created_at REAL NOT NULL,
    bumped_at REAL,
    reason TEXT,
    expires_at REAL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS epochs_expiry ON epochs (expires_at) WHERE expires_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS revoked (
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    expires_at REAL NOT NULL,
    uid TEXT,
    PRIMARY KEY (kind, id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS revoked_expiry ON revoked (expires_at);
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    generation INTEGER NOT NULL,
    first_generation INTEGER NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    uid TEXT,
    rotated_at REAL,
    previous INTEGER,
    revoked INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS sessions_expiry ON sessions (expires_at);
"""

# Files written before session records existed kept revoked session ids in ``revoked``: move them
# to revoked session records once, so no revocation is forgotten by the upgrade.
_MIGRATE = """
BEGIN IMMEDIATE;
INSERT INTO sessions (id, generation, first_generation, created_at, expires_at, revoked)
    SELECT id, 0, 0, 0, expires_at, 1 FROM revoked WHERE kind = 's'
    ON CONFLICT (id) DO UPDATE SET revoked = 1, expires_at = max(sessions.expires_at, excluded.expires_at);
DELETE FROM revoked WHERE kind = 's';
COMMIT;
"""

_SESSION = "generation, first_generation, created_at, expires_at, uid, rotated_at, previous, revoked"

_RECORD = "epoch, created_at, bumped_at, reason, expires_at"

# One statement answers a whole check: the user record, the global record, the revoked jti and
# the session record (padded to the session row's eight columns).
_FETCH = f"""
SELECT 'u', {_RECORD}, 0, 0, 0 FROM epochs WHERE scope = :user AND (expires_at IS NULL OR expires_at > :now)
UNION ALL SELECT 'g', {_RECORD}, 0, 0, 0 FROM epochs WHERE scope = 'g'
UNION ALL SELECT 'j', 0, 0, 0, 0, 0, 0, 0, 0 FROM revoked WHERE kind = 'j' AND id = :jti AND expires_at > :now
UNION ALL SELECT 's', {_SESSION} FROM sessions WHERE id = :sid AND expires_at > :now
"""

_BUMP = f"""
INSERT INTO epochs (scope, epoch, created_at, bumped_at, reason, expires_at)
VALUES (:scope, :clock, :now, :now, :reason, :expires_at)
ON CONFLICT (scope) DO UPDATE SET
    epoch = max(epochs.epoch + 1, excluded.epoch),
    bumped_at = excluded.bumped_at,
    reason = excluded.reason,
    expires_at = max(coalesce(epochs.expires_at, 0), excluded.expires_at)
RETURNING {_RECORD}
"""

# An expired row counts as missing: it is recreated (moving forward, never reusing its epoch),
# not extended, exactly as if the lazy purge had already deleted it.
_ENSURE_USER = f"""
INSERT INTO epochs (scope, epoch, created_at, expires_at) VALUES (:scope, :clock, :now, :expires_at)
ON CONFLICT (scope) DO UPDATE SET
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
    "INSERT INTO epochs (scope, epoch, created_at) VALUES ('g', :clock, :now) ON CONFLICT (scope) DO NOTHING"
)

_REVOKE = """
INSERT INTO revoked (kind, id, expires_at, uid) VALUES (:kind, :id, :expires_at, :uid)
ON CONFLICT (kind, id) DO UPDATE SET expires_at = max(revoked.expires_at, excluded.expires_at)
"""

_PURGE = (
    "DELETE FROM revoked WHERE (kind, id) IN (SELECT kind, id FROM revoked WHERE expires_at <= :now LIMIT :n)",
    "DELETE FROM epochs WHERE scope IN (SELECT scope FROM epochs WHERE expires_at <= :now LIMIT :n)",
    "DELETE FROM sessions WHERE id IN (SELECT id FROM sessions WHERE expires_at <= :now LIMIT :n)",
)

_GET_SESSION = f"SELECT {_SESSION} FROM sessions WHERE id = ? AND expires_at > ?"
_PUT_SESSION = f"INSERT OR REPLACE INTO sessions (id, {_SESSION}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"


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
    )


def _session_row(session_id: str, record: SessionRecord) -> tuple[Any, ...]:
    return (
        session_id,
        record.generation,
        record.first_generation,
        record.created_at,
        record.expires_at,
        record.uid,
        record.rotated_at,
        record.previous,
        int(record.revoked),
    )


class SqliteStore:
    """A store in one SQLite file, shared by every process that opens the same path.

    Args:
        path: The database file; it is created (with its tables) if missing.
        read_timeout: Seconds a check waits for a lock held elsewhere before failing (then
            the request gets a 503 in fail-closed mode). Kept short: checks run on the event loop.
        write_timeout: Seconds a bump or revoke waits for another writer.
    """

    kind = "sqlite"

    def __init__(self, path: str | os.PathLike[str], *, read_timeout: float = 0.25, write_timeout: float = 5.0) -> None:
        """Open (creating if needed) the database at ``path``."""
        self.path = os.fspath(path)
        if not self.path or self.path == ":memory:":
            raise ConfigurationError(
                "sqlite needs a file path, e.g. sqlite:///revocation.db; use memory:// for a store in memory"
            )
        self._read_timeout = read_timeout
        self._write_timeout = write_timeout
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[sqlite3.Connection] = []
        self._aio = AsyncFromSync(self, offload_writes=True)
        try:
            self._connection(write=True)
        except StoreUnavailableError as exc:
            raise ConfigurationError(
                f"cannot open the SQLite store at {self.path!r}: {exc.__cause__}; "
                "check that the directory exists and is writable by this process"
            ) from exc.__cause__

    @property
    def sync(self) -> SyncStore:
        """The blocking side (this object)."""
        return self

    @property
    def aio(self) -> AsyncStore:
        """The awaitable side; writes run in a worker thread."""
        return self._aio

    # -- connections -----------------------------------------------------------------------

    def _identity(self) -> Optional[tuple[int, int]]:
        try:
            stat = os.stat(self.path)
        except OSError:
            return None
        return (stat.st_dev, stat.st_ino)

    def _connection(self, *, write: bool) -> sqlite3.Connection:
        slot = "writer" if write else "reader"
        conn: Optional[sqlite3.Connection] = getattr(self._local, slot, None)
        identity = self._identity()
        # A file deleted or replaced under a live connection would leave this process reading
        # state no other process sees; reopen so that every process shares one file again.
        if conn is not None and identity is not None and identity == getattr(self._local, slot + "_id", None):
            return conn
        if conn is not None:
            self._drop(conn)
            # Forget it before reopening: if the reopen fails and the original file comes back,
            # the identity would match again and the closed connection would be handed out forever.
            setattr(self._local, slot, None)
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
                timeout=self._write_timeout if write else self._read_timeout,
                isolation_level=None,
                check_same_thread=False,
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            if write:
                conn.executescript(_SCHEMA)
                if conn.execute("SELECT 1 FROM revoked WHERE kind = 's' LIMIT 1").fetchone():
                    conn.executescript(_MIGRATE)
        except sqlite3.Error as exc:
            raise StoreUnavailableError(f"SQLite store {self.path!r} cannot be opened") from exc
        setattr(self._local, slot, conn)
        setattr(self._local, slot + "_id", self._identity())
        with self._lock:
            self._connections.append(conn)
        return conn

    def _drop(self, conn: sqlite3.Connection) -> None:
        with self._lock:
            if conn in self._connections:
                self._connections.remove(conn)
        conn.close()

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise StoreUnavailableError(f"SQLite store {self.path!r} is unavailable: {exc}") from exc

    # -- the contract ----------------------------------------------------------------------

    def setup(self, now: float) -> EpochRecord:
        """See ``SyncStore.setup``."""
        with self._errors():
            conn = self._connection(write=True)
            conn.execute(_ENSURE_GLOBAL, {"clock": clock_epoch(now), "now": now})
            row = conn.execute(f"SELECT {_RECORD} FROM epochs WHERE scope = 'g'").fetchone()
        return _record(row)

    def fetch(self, uid: str, jti: Optional[str], session_id: Optional[str], now: float) -> CheckState:
        """See ``SyncStore.fetch``."""
        params: dict[str, Any] = {"user": _USER + uid, "jti": jti, "sid": session_id, "now": now}
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
        """See ``SyncStore.issue``."""
        scope = _USER + uid
        extend_to = expires_at + RECORD_SLACK
        with self._errors():
            conn = self._connection(write=True)
            rows = conn.execute(
                f"SELECT scope, {_RECORD} FROM epochs WHERE scope IN (:scope, 'g')", {"scope": scope}
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
                conn.execute(_ENSURE_GLOBAL, {"clock": clock_epoch(now), "now": now})
                user_row = conn.execute(
                    _ENSURE_USER,
                    {"scope": scope, "clock": clock_epoch(now), "now": now, "expires_at": extend_to},
                ).fetchall()[0]
                global_row = conn.execute("SELECT epoch FROM epochs WHERE scope = 'g'").fetchone()
                generation = None
                if session_id is not None:
                    # Read again inside the write transaction: another process may have moved it.
                    session = self._get_session(conn, session_id, now, expired_too=True)
                    changed = ensure_session(session, uid, now, expires_at, extend_to)
                    if changed is not None:
                        conn.execute(_PUT_SESSION, _session_row(session_id, changed))
                        session = changed
                    assert session is not None
                    generation = session.generation
                self._purge(conn, now)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return Stamps(user_epoch=user_row[0], global_epoch=global_row[0], session_generation=generation)

    @staticmethod
    def _get_session(
        conn: sqlite3.Connection, session_id: str, now: float, *, expired_too: bool = False
    ) -> Optional[SessionRecord]:
        row = conn.execute(_GET_SESSION, (session_id, -math.inf if expired_too else now)).fetchone()
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
                    conn.execute(_PUT_SESSION, _session_row(session_id, write))
                    self._purge(conn, now)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return result

    def rotate_session(
        self, session_id: str, presented_generation: int, now: float, grace: float, expires_at: float
    ) -> RotationOutcome:
        """See ``SyncStore.rotate_session``."""
        return self._update_session(
            session_id, now, lambda record: rotate(record, presented_generation, now, grace, expires_at)
        )

    def get_session(self, session_id: str, now: float) -> Optional[SessionRecord]:
        """See ``SyncStore.get_session``."""
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
        params = {"scope": scope, "clock": clock_epoch(now), "now": now, "reason": reason, "expires_at": expires_at}
        with self._errors():
            conn = self._connection(write=True)
            # fetchall: a RETURNING statement holds its write lock until it is stepped to the end.
            row = conn.execute(_BUMP, params).fetchall()[0]
        return _record(row)

    def bump_user(self, uid: str, now: float, reason: Optional[str], expires_at: float) -> EpochRecord:
        """See ``SyncStore.bump_user``."""
        return self._bump(_USER + uid, now, reason, expires_at)

    def bump_global(self, now: float, reason: Optional[str]) -> EpochRecord:
        """See ``SyncStore.bump_global``."""
        return self._bump(_GLOBAL, now, reason, None)

    def _revoke(self, kind: str, ident: str, expires_at: float, now: float, uid: Optional[str] = None) -> None:
        with self._errors():
            conn = self._connection(write=True)
            conn.execute(_REVOKE, {"kind": kind, "id": ident, "expires_at": expires_at, "uid": uid})
            self._purge(conn, now)

    def revoke_token(self, uid: str, jti: str, expires_at: float, now: float) -> None:
        """See ``SyncStore.revoke_token``."""
        self._revoke(_TOKEN, jti, expires_at, now, uid)

    def revoke_session(self, session_id: str, expires_at: float, now: float) -> None:
        """See ``SyncStore.revoke_session``."""

        def revoke(record: Optional[SessionRecord]) -> tuple[None, SessionRecord]:
            return None, revoke_session_record(record, now, expires_at)

        self._update_session(session_id, now, revoke)

    def get_user(self, uid: str, now: float) -> Optional[EpochRecord]:
        """See ``SyncStore.get_user``."""
        return self.fetch(uid, None, None, now).user

    def get_global(self, now: float) -> Optional[EpochRecord]:
        """See ``SyncStore.get_global``."""
        return self.fetch("", None, None, now).global_

    def stats(self, now: float) -> StoreStats:
        """See ``SyncStore.stats``."""
        with self._errors():
            conn = self._connection(write=True)
            users = conn.execute(
                "SELECT count(*) FROM epochs WHERE scope != 'g' AND expires_at > ?", (now,)
            ).fetchone()[0]
            tokens = conn.execute(
                "SELECT count(*) FROM revoked WHERE kind = ? AND expires_at > ?", (_TOKEN, now)
            ).fetchone()[0]
            sessions, revoked_sessions = conn.execute(
                "SELECT count(*), coalesce(sum(revoked), 0) FROM sessions WHERE expires_at > ?", (now,)
            ).fetchone()
        return StoreStats(
            kind=self.kind, users=users, revoked_tokens=tokens, revoked_sessions=revoked_sessions, sessions=sessions
        )

    def export_entries(self, now: float) -> Iterator[SnapshotEntry]:
        """See ``SyncStore.export_entries``."""
        with self._errors():
            conn = self._connection(write=True)
            records = conn.execute(
                f"SELECT scope, {_RECORD} FROM epochs WHERE expires_at IS NULL OR expires_at > ?", (now,)
            ).fetchall()
            revoked = conn.execute(
                "SELECT kind, id, expires_at, uid FROM revoked WHERE kind = ? AND expires_at > ?", (_TOKEN, now)
            ).fetchall()
            sessions = conn.execute(f"SELECT id, {_SESSION} FROM sessions WHERE expires_at > ?", (now,)).fetchall()
        for row in records:
            scope = row[0]
            if scope == _GLOBAL:
                yield SnapshotEntry("global", "", record=_record(row[1:]))
            else:
                yield SnapshotEntry("user", scope[len(_USER) :], record=_record(row[1:]))
        for _, ident, expires_at, uid in revoked:
            yield SnapshotEntry("token", ident, expires_at=expires_at, uid=uid)
        for row in sessions:
            session = _session(row[1:])
            yield SnapshotEntry("session", row[0], expires_at=session.expires_at, session=session)

    def import_entries(self, entries: Iterable[SnapshotEntry], now: float) -> int:
        """See ``SyncStore.import_entries``."""
        count = 0
        with self._errors():
            conn = self._connection(write=True)
            conn.execute("BEGIN IMMEDIATE")
            try:
                for entry in entries:
                    if entry.kind in ("global", "user") and entry.record is not None:
                        scope = _GLOBAL if entry.kind == "global" else _USER + entry.key
                        row = conn.execute(f"SELECT {_RECORD} FROM epochs WHERE scope = ?", (scope,)).fetchone()
                        merged = merge_records(_record(row) if row else None, entry.record)
                        conn.execute(
                            "INSERT OR REPLACE INTO epochs (scope, epoch, created_at, bumped_at, reason, expires_at) "
                            "VALUES (?, ?, ?, ?, ?, ?)",
                            (
                                scope,
                                merged.epoch,
                                merged.created_at,
                                merged.bumped_at,
                                merged.reason,
                                merged.expires_at,
                            ),
                        )
                    elif entry.kind == "token" and entry.expires_at is not None:
                        params = {"kind": _TOKEN, "id": entry.key, "expires_at": entry.expires_at, "uid": entry.uid}
                        conn.execute(_REVOKE, params)
                    elif entry.kind == "session" and entry.session is not None:
                        if not entry.session.is_live(now):
                            continue
                        current = self._get_session(conn, entry.key, now)
                        conn.execute(_PUT_SESSION, _session_row(entry.key, merge_sessions(current, entry.session, now)))
                    elif entry.kind == "session" and entry.expires_at is not None:
                        if entry.expires_at <= now:
                            continue
                        current = self._get_session(conn, entry.key, now, expired_too=True)
                        revoked = revoke_session_record(current, now, entry.expires_at)
                        conn.execute(_PUT_SESSION, _session_row(entry.key, revoked))
                    else:
                        continue
                    count += 1
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return count

    def wipe(self) -> None:
        """See ``SyncStore.wipe``."""
        with self._errors():
            conn = self._connection(write=True)
            conn.execute("DELETE FROM epochs")
            conn.execute("DELETE FROM revoked")
            conn.execute("DELETE FROM sessions")

    def close(self) -> None:
        """Close every connection this store opened, in every thread."""
        with self._lock:
            connections, self._connections = self._connections, []
        for conn in connections:
            conn.close()
        self._local = threading.local()

    def _purge(self, conn: sqlite3.Connection, now: float) -> None:
        for statement in _PURGE:
            conn.execute(statement, {"now": now, "n": _SWEEP})

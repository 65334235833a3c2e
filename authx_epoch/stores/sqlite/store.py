"""``SqliteStore``: the store contract's operations on one SQLite file.

A bump or a revoke is one atomic statement; an operation that decides on what it read (a mint
that creates records, a rotation, an import) reads again and writes in one ``BEGIN IMMEDIATE``
transaction. Writes also delete a few expired rows each (``PURGE_EXPIRED``).
"""

from __future__ import annotations

import copy
import logging
import os
import sqlite3
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
    owned_entries,
    revoke_session_record,
    rotate,
)
from authx_epoch.stores.contract import Store
from authx_epoch.stores.namespaces import ROOT_NAMESPACE, check_namespace
from authx_epoch.stores.sqlite.file import DatabaseFile
from authx_epoch.stores.sqlite.memo import read_parts
from authx_epoch.stores.sqlite.schema import (
    BUMP_EPOCH,
    ENSURE_GLOBAL,
    ENSURE_USER,
    GLOBAL_SCOPE,
    PURGE_EXPIRED,
    PUT_SESSION,
    RECORD_COLUMNS,
    REVOKE_TOKEN,
    USER_PREFIX,
    epoch_record,
    read_session,
    session_row,
    unstorable,
    write_transaction,
)
from authx_epoch.stores.sqlite.snapshot import merge_entries, namespace_entries

_T = TypeVar("_T")

logger = logging.getLogger("authx_epoch")

#: How many expired rows of each table a write deletes.
_SWEEP = 64


class SqliteStore(Store):
    """A store in one SQLite file, shared by every process that opens the same path.

    Args:
        path: The database file; it is created (with its tables) if missing, and upgraded if
            written by an older authx-epoch (see ``authx_epoch.stores.sqlite.schema``).
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
        self._file = DatabaseFile(self.path, read_timeout, write_timeout)
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
            conn.execute(ENSURE_GLOBAL, {"ns": ns, "clock": clock_epoch(now), "now": now})
            row = conn.execute(f"SELECT {RECORD_COLUMNS} FROM epochs WHERE ns = ? AND scope = 'g'", (ns,)).fetchone()
        return epoch_record(row)

    def fetch(self, uid: str, jti: Optional[str], session_id: Optional[str], now: float) -> CheckState:
        """See ``Store.fetch``."""
        key = (self._namespace, uid, jti, session_id)
        # try/except, not ``_errors()``: a context manager costs the check a microsecond.
        try:
            memo = self._file.check_memo()
            # The version is read before the statement: a commit landing between the two tags
            # newer rows with an older version, which only costs the next check a read; never the
            # other way round.
            parts = memo.get(key)
            if parts is None:
                params: dict[str, Any] = {
                    "ns": key[0],
                    "user": USER_PREFIX + uid,
                    "uid": uid,
                    "jti": jti,
                    "sid": session_id,
                }
                try:
                    parts = read_parts(memo.connection, params)
                except UnicodeEncodeError:
                    # An id holding a lone surrogate (JSON allows "\ud800" in an unverified token)
                    # cannot be written to SQLite, so nothing is stored under it: look it up as absent.
                    params = {name: None if unstorable(value) else value for name, value in params.items()}
                    parts = read_parts(memo.connection, params)
                if parts is None:
                    # The file was replaced by an empty one: every record is lost, which means rejection.
                    return CheckState(user=None, global_=None)
                memo.keep(key, parts)
        except sqlite3.Error as exc:
            raise StoreUnavailableError(f"SQLite store {self.path!r} is unavailable: {exc}") from exc
        user, global_, jti_until, session = parts
        if user is not None and not user.is_live(now):
            user = None
        if session is not None and not session.is_live(now):
            session = None
        jti_revoked = jti_until is not None and jti_until > now
        return CheckState(user, global_, jti_revoked, session is not None and session.revoked, session)

    def issue(self, uid: str, now: float, expires_at: float, session_id: Optional[str] = None) -> Stamps:
        """See ``Store.issue``."""
        ns = self._namespace
        scope = USER_PREFIX + uid
        extend_to = expires_at + RECORD_SLACK
        with self._errors():
            conn = self._connection(write=True)
            rows = conn.execute(
                f"SELECT scope, {RECORD_COLUMNS} FROM epochs WHERE ns = :ns AND scope IN (:scope, 'g')",
                {"ns": ns, "scope": scope},
            ).fetchall()
            found = {row[0]: epoch_record(row[1:]) for row in rows}
            user, global_ = found.get(scope), found.get(GLOBAL_SCOPE)
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
            with write_transaction(conn):
                changed = None
                if session_id is not None:
                    # Read again inside the write transaction: another process may have moved it.
                    # Before any write: a session of another user refuses the whole mint.
                    session = self._get_session(conn, session_id, now, expired_too=True)
                    changed = ensure_session(session, uid, now, expires_at, extend_to)
                conn.execute(ENSURE_GLOBAL, {"ns": ns, "clock": clock_epoch(now), "now": now})
                user_row = conn.execute(
                    ENSURE_USER,
                    {"ns": ns, "scope": scope, "clock": clock_epoch(now), "now": now, "expires_at": extend_to},
                ).fetchall()[0]
                global_row = conn.execute("SELECT epoch FROM epochs WHERE ns = ? AND scope = 'g'", (ns,)).fetchone()
                generation = None
                if session_id is not None:
                    if changed is not None:
                        conn.execute(PUT_SESSION, session_row(ns, session_id, changed))
                        session = changed
                    assert session is not None
                    generation = session.generation
                self._purge(conn, now)
        return Stamps(user_epoch=user_row[0], global_epoch=global_row[0], session_generation=generation)

    def _get_session(
        self, conn: sqlite3.Connection, session_id: str, now: float, *, expired_too: bool = False
    ) -> Optional[SessionRecord]:
        return read_session(conn, self._namespace, session_id, now, expired_too=expired_too)

    def _update_session(
        self,
        session_id: str,
        now: float,
        change: Callable[[Optional[SessionRecord]], tuple[_T, Optional[SessionRecord]]],
    ) -> _T:
        """Read a session record, compute its change and write it, in one write transaction."""
        with self._errors():
            conn = self._connection(write=True)
            with write_transaction(conn):
                result, write = change(self._get_session(conn, session_id, now, expired_too=True))
                if write is not None:
                    conn.execute(PUT_SESSION, session_row(self._namespace, session_id, write))
                    self._purge(conn, now)
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
            row = conn.execute(BUMP_EPOCH, params).fetchall()[0]
        return epoch_record(row)

    def bump_user(self, uid: str, now: float, reason: Optional[str], expires_at: float) -> EpochRecord:
        """See ``Store.bump_user``."""
        return self._bump(USER_PREFIX + uid, now, reason, expires_at)

    def bump_global(self, now: float, reason: Optional[str]) -> EpochRecord:
        """See ``Store.bump_global``."""
        return self._bump(GLOBAL_SCOPE, now, reason, None)

    def revoke_token(self, uid: str, jti: str, expires_at: float, now: float) -> None:
        """See ``Store.revoke_token``."""
        with self._errors():
            conn = self._connection(write=True)
            conn.execute(REVOKE_TOKEN, {"ns": self._namespace, "uid": uid, "jti": jti, "expires_at": expires_at})
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
        with self._errors():
            return namespace_entries(self._connection(write=True), self._namespace, now)

    def import_entries(self, entries: Iterable[SnapshotEntry], now: float) -> int:
        """See ``Store.import_entries``."""
        checked = owned_entries(entries)
        with self._errors():
            return merge_entries(self._connection(write=True), self._namespace, checked, now)

    def wipe(self) -> None:
        """See ``Store.wipe`` (this namespace only)."""
        ns = self._namespace
        with self._errors():
            conn = self._connection(write=True)
            with write_transaction(conn):
                for table in ("epochs", "revoked_tokens", "sessions"):
                    conn.execute(f"DELETE FROM {table} WHERE ns = ?", (ns,))

    def close(self) -> None:
        """Close every connection this store opened, in every thread (nothing for a namespace view)."""
        if self._owns_file:
            self._file.close()

    def _purge(self, conn: sqlite3.Connection, now: float) -> None:
        for statement in PURGE_EXPIRED:
            conn.execute(statement, {"now": now, "n": _SWEEP})

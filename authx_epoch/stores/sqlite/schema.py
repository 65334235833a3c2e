"""The file's schema: its tables, the statements every operation runs, rows to records and back, and upgrades.

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

import logging
import math
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Optional

from authx_epoch.records import EpochRecord, SessionRecord, clock_epoch
from authx_epoch.stores.namespaces import ROOT_NAMESPACE

logger = logging.getLogger("authx_epoch")

#: The schema version this module writes (``PRAGMA user_version``); files at 0 are upgraded to it.
SCHEMA_VERSION = 2

#: The ``scope`` of a namespace's global record in ``epochs``.
GLOBAL_SCOPE = "g"
#: A user's record in ``epochs`` has the ``scope`` ``USER_PREFIX + uid``.
USER_PREFIX = "u:"

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

#: The columns of a session record, in the order ``session_record`` reads them.
SESSION_COLUMNS = "generation, first_generation, created_at, expires_at, uid, rotated_at, previous, revoked, grace_used"

#: The columns of an epoch record, in the order ``epoch_record`` reads them.
RECORD_COLUMNS = "epoch, created_at, bumped_at, reason, expires_at"

#: One statement answers a whole check: the user record, the global record, the revoked jti's
#: expiry and the session record (padded to the session row's nine columns), each row tagged by
#: its first column. Nothing is filtered by time: the rows are kept for later checks (see
#: ``memo``), and each check judges liveness at its own ``now``.
FETCH_CHECK = f"""
SELECT 'u', {RECORD_COLUMNS}, 0, 0, 0, 0 FROM epochs WHERE ns = :ns AND scope = :user
UNION ALL SELECT 'g', {RECORD_COLUMNS}, 0, 0, 0, 0 FROM epochs WHERE ns = :ns AND scope = 'g'
UNION ALL SELECT 'j', expires_at, 0, 0, 0, 0, 0, 0, 0, 0 FROM revoked_tokens
    WHERE ns = :ns AND uid = :uid AND jti = :jti
UNION ALL SELECT 's', {SESSION_COLUMNS} FROM sessions WHERE ns = :ns AND id = :sid
"""


#: Bump a scope's epoch (creating its record at the clock epoch), returning the record.
BUMP_EPOCH = f"""
INSERT INTO epochs (ns, scope, epoch, created_at, bumped_at, reason, expires_at)
VALUES (:ns, :scope, :clock, :now, :now, :reason, :expires_at)
ON CONFLICT (ns, scope) DO UPDATE SET
    epoch = max(epochs.epoch + 1, excluded.epoch),
    bumped_at = excluded.bumped_at,
    reason = excluded.reason,
    expires_at = max(coalesce(epochs.expires_at, 0), excluded.expires_at)
RETURNING {RECORD_COLUMNS}
"""

#: Create or extend a user's record for a mint, returning the record.
# An expired row counts as missing: it is recreated (moving forward, never reusing its epoch),
# not extended, exactly as if the lazy purge had already deleted it.
ENSURE_USER = f"""
INSERT INTO epochs (ns, scope, epoch, created_at, expires_at) VALUES (:ns, :scope, :clock, :now, :expires_at)
ON CONFLICT (ns, scope) DO UPDATE SET
    epoch = CASE WHEN epochs.expires_at <= excluded.created_at
        THEN max(epochs.epoch + 1, excluded.epoch) ELSE epochs.epoch END,
    created_at = CASE WHEN epochs.expires_at <= excluded.created_at
        THEN excluded.created_at ELSE epochs.created_at END,
    bumped_at = CASE WHEN epochs.expires_at <= excluded.created_at THEN NULL ELSE epochs.bumped_at END,
    reason = CASE WHEN epochs.expires_at <= excluded.created_at THEN NULL ELSE epochs.reason END,
    expires_at = max(coalesce(epochs.expires_at, 0), excluded.expires_at)
RETURNING {RECORD_COLUMNS}
"""

#: Create the namespace's global record if it is missing.
ENSURE_GLOBAL = (
    "INSERT INTO epochs (ns, scope, epoch, created_at) VALUES (:ns, 'g', :clock, :now) "
    "ON CONFLICT (ns, scope) DO NOTHING"
)

#: Record a revoked jti (keeping the later expiry of two).
REVOKE_TOKEN = """
INSERT INTO revoked_tokens (ns, uid, jti, expires_at) VALUES (:ns, :uid, :jti, :expires_at)
ON CONFLICT (ns, uid, jti) DO UPDATE SET expires_at = max(revoked_tokens.expires_at, excluded.expires_at)
"""

#: Delete at most ``:n`` expired rows of each table (of any namespace).
PURGE_EXPIRED = (
    "DELETE FROM revoked_tokens WHERE (ns, uid, jti) IN "
    "(SELECT ns, uid, jti FROM revoked_tokens WHERE expires_at <= :now LIMIT :n)",
    "DELETE FROM epochs WHERE (ns, scope) IN (SELECT ns, scope FROM epochs WHERE expires_at <= :now LIMIT :n)",
    "DELETE FROM sessions WHERE (ns, id) IN (SELECT ns, id FROM sessions WHERE expires_at <= :now LIMIT :n)",
)

#: A session record by ``(ns, id)``, unless it expired before the third parameter.
GET_SESSION = f"SELECT {SESSION_COLUMNS} FROM sessions WHERE ns = ? AND id = ? AND expires_at > ?"
#: Write a whole session record, from ``session_row``.
PUT_SESSION = f"INSERT OR REPLACE INTO sessions (ns, id, {SESSION_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"


def unstorable(value: object) -> bool:
    """Whether ``value`` is a string SQLite cannot store (it holds a lone surrogate), so nothing is stored under it."""
    if not isinstance(value, str):
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def epoch_record(row: tuple[Any, ...]) -> EpochRecord:
    """The epoch record in a row of ``RECORD_COLUMNS``."""
    return EpochRecord(epoch=row[0], created_at=row[1], bumped_at=row[2], reason=row[3], expires_at=row[4])


def session_record(row: tuple[Any, ...]) -> SessionRecord:
    """The session record in a row of ``SESSION_COLUMNS``."""
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


def session_row(ns: str, session_id: str, record: SessionRecord) -> tuple[Any, ...]:
    """The parameters of ``PUT_SESSION`` for ``record``."""
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


def user_version(conn: sqlite3.Connection) -> int:
    """The file's schema version (``PRAGMA user_version``)."""
    version: int = conn.execute("PRAGMA user_version").fetchone()[0]
    return version


def table_names(conn: sqlite3.Connection) -> set[str]:
    """The names of the file's tables."""
    return {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def upgrade(conn: sqlite3.Connection, now: float) -> None:
    """Bring a version-0 file (or an empty one) to ``SCHEMA_VERSION``, inside the caller's write transaction."""
    old = [name for name in _OLD_TABLES if name in table_names(conn)]
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
            params = {"ns": ROOT_NAMESPACE, "scope": GLOBAL_SCOPE, "clock": clock_epoch(now), "now": now}
            conn.execute(BUMP_EPOCH, {**params, "reason": reason, "expires_at": None}).fetchall()
            logger.warning(
                "SQLite store upgrade: %d unexpired revoked token ids had no owner and cannot be kept per user; "
                "the global epoch was bumped, so every user logs in again and no revoked token comes back",
                ownerless,
            )
    for name in old:
        conn.execute(f"DROP TABLE _v0_{name}")
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def read_session(
    conn: sqlite3.Connection, ns: str, session_id: str, now: float, *, expired_too: bool = False
) -> Optional[SessionRecord]:
    """The session record ``session_id`` of namespace ``ns``, or ``None``; expired ones too if ``expired_too``."""
    row = conn.execute(GET_SESSION, (ns, session_id, -math.inf if expired_too else now)).fetchone()
    return session_record(row) if row is not None else None


@contextmanager
def write_transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE``, then ``COMMIT``, or ``ROLLBACK`` if anything fails (the commit included).

    The write lock is taken before the first read, so what the block reads stays true until it commits.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise

"""What only the SQLite store promises: WAL, durability, one query per check, lazy purge, sharing a file."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from authx_epoch import ConfigurationError, SqliteStore, StoreUnavailableError, open_store
from authx_epoch.records import RECORD_SLACK, CheckState, clock_epoch

pytestmark = pytest.mark.sqlite

T0 = 1_700_000_000.0


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "revocation.db"


def raw(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None)


def test_the_file_is_in_wal_mode(path: Path) -> None:
    SqliteStore(path).close()
    conn = raw(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def test_state_survives_a_restart(path: Path) -> None:
    store = SqliteStore(path)
    store.setup(T0)
    stamps = store.issue("alice", T0, T0 + 900)
    bumped = store.bump_user("bob", T0 + 1, "password_change", T0 + 3600)
    store.revoke_token("alice", "j1", T0 + 900, T0)
    store.revoke_session("s1", T0 + 900, T0)
    store.close()
    again = SqliteStore(path)
    state = again.fetch("alice", "j1", "s1", T0 + 2)
    assert state.user is not None
    assert state.user.epoch == stamps.user_epoch
    assert state.global_ is not None
    assert state.global_.created_at == T0
    assert state.jti_revoked
    assert state.session_revoked
    assert again.get_user("bob", T0 + 2) == bumped
    again.close()


def _traced(store: SqliteStore, uid: str, now: float) -> tuple[list[str], CheckState]:
    """The statements one check ran on the store's reader connection, and its answer."""
    conn = store._connection(write=False)
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    try:
        state = store.fetch(uid, "j", "s", now)
    finally:
        conn.set_trace_callback(None)
    return [statement.split()[0] + " " + statement.split()[1] for statement in statements], state


def test_a_check_is_one_statement_then_only_the_file_version_until_a_commit(path: Path) -> None:
    store, other = SqliteStore(path), SqliteStore(path)
    store.issue("alice", T0, T0 + 900)
    store.fetch("alice", "j", "s", T0)  # open the reader connection
    # Nothing committed since the last read: the check only asks whether the file changed.
    statements, state = _traced(store, "alice", T0)
    assert statements == ["PRAGMA data_version"]
    assert state.user is not None
    assert state.global_ is not None
    first = state.user.epoch
    # Another connection (another process would do the same) commits a bump: the very next
    # check reads the file again and sees it.
    bumped = other.bump_user("alice", T0 + 1, None, T0 + 3600)
    statements, state = _traced(store, "alice", T0 + 1)
    assert statements == ["PRAGMA data_version", "SELECT 'u',"]
    assert state.user is not None
    assert state.user.epoch == bumped.epoch > first
    # This store's own writes go through its writer connection, which counts as another one.
    store.revoke_token("alice", "j", T0 + 900, T0 + 1)
    statements, state = _traced(store, "alice", T0 + 1)
    assert statements == ["PRAGMA data_version", "SELECT 'u',"]
    assert state.jti_revoked
    store.close()
    other.close()


@pytest.mark.parametrize("at", [0, 1], ids=["at the version read", "at the statement"])
def test_a_commit_racing_a_check_is_seen_by_the_next_check(path: Path, at: int) -> None:
    """A bump committed while a check runs (between its statements) is never hidden by the memo."""
    store, other = SqliteStore(path), SqliteStore(path)
    store.issue("alice", T0, T0 + 900)
    store.fetch("alice", None, None, T0)
    other.issue("bob", T0, T0 + 900)  # a commit elsewhere: the next check runs both statements
    conn = store._connection(write=False)
    seen: list[str] = []
    bumped: list[int] = []

    def commit_at_the_chosen_statement(statement: str) -> None:
        seen.append(statement)
        if len(seen) == at + 1:
            bumped.append(other.bump_user("alice", T0 + 1, None, T0 + 3600).epoch)

    conn.set_trace_callback(commit_at_the_chosen_statement)
    try:
        store.fetch("alice", None, None, T0 + 1)
    finally:
        conn.set_trace_callback(None)
    assert len(seen) == 2
    assert bumped
    user = store.fetch("alice", None, None, T0 + 1).user
    assert user is not None
    assert user.epoch == bumped[0]
    store.close()
    other.close()


def test_kept_answers_are_judged_at_each_checks_own_time(path: Path) -> None:
    store = SqliteStore(path)
    store.issue("alice", T0, T0 + 900)
    store.revoke_token("alice", "j", T0 + 60, T0)
    store.revoke_session("s", T0 + 120, T0)
    early = store.fetch("alice", "j", "s", T0)
    assert early.user is not None
    assert early.jti_revoked
    assert early.session_revoked
    # The same rows, answered from memory: each expiry passes at its own time.
    statements, state = _traced(store, "alice", T0 + 61)
    assert statements == ["PRAGMA data_version"]
    assert not state.jti_revoked
    assert state.session_revoked
    statements, state = _traced(store, "alice", T0 + 121)
    assert statements == ["PRAGMA data_version"]
    assert not state.session_revoked
    _, late = _traced(store, "alice", T0 + 900 + RECORD_SLACK + 1)
    assert late.user is None
    store.close()


def test_two_store_objects_on_one_file_share_state(path: Path) -> None:
    one, two = SqliteStore(path), SqliteStore(path)
    stamps = one.issue("alice", T0, T0 + 900)
    assert two.issue("alice", T0 + 1, T0 + 900) == stamps
    bumped = two.bump_user("alice", T0 + 2, None, T0 + 3600)
    user = one.fetch("alice", None, None, T0 + 2).user
    assert user is not None
    assert user.epoch == bumped.epoch
    one.close()
    two.close()


def test_reads_do_not_wait_for_a_writer(path: Path) -> None:
    store = SqliteStore(path, read_timeout=0.05)
    store.issue("alice", T0, T0 + 900)
    writer = raw(path)
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("UPDATE epochs SET reason = 'held' WHERE scope != 'g'")
    try:
        # WAL: the check reads the last committed state while another connection holds the write lock
        state = store.fetch("alice", None, None, T0)
        assert state.user is not None
        assert state.user.reason is None
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    store.close()


def test_a_writer_holding_the_lock_too_long_is_store_unavailable(path: Path) -> None:
    store = SqliteStore(path, write_timeout=0.05)
    store.issue("alice", T0, T0 + 900)
    writer = raw(path)
    writer.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StoreUnavailableError):
            store.bump_user("alice", T0, None, T0 + 3600)
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    assert store.bump_user("alice", T0, None, T0 + 3600).epoch == clock_epoch(T0) + 1
    store.close()


def test_expired_rows_are_ignored_and_purged_lazily(path: Path) -> None:
    store = SqliteStore(path)
    for i in range(40):
        store.revoke_token("alice", f"old-{i}", T0 + 10, T0)
        store.revoke_session(f"sold-{i}", T0 + 10, T0)
        store.issue(f"user-{i}", T0, T0 + 10)
    conn = raw(path)

    def rows() -> tuple[int, int]:
        # Revoked jtis, plus revoked sessions (kept as session records since rotation came in).
        revoked = conn.execute("SELECT count(*) FROM revoked_tokens").fetchone()[0]
        revoked += conn.execute("SELECT count(*) FROM sessions").fetchone()[0]
        users = conn.execute("SELECT count(*) FROM epochs WHERE scope != 'g'").fetchone()[0]
        return revoked, users

    assert rows() == (80, 40)
    later = T0 + 100_000
    assert store.stats(later).revoked_tokens == 0
    assert store.get_user("user-0", later) is None
    # no cleanup job: ordinary writes sweep the expired rows away a batch at a time
    for i in range(5):
        store.revoke_token("bob", f"new-{i}", later + 900, later)
    assert rows() == (5, 0)
    conn.close()
    store.close()


def test_a_deleted_file_means_lost_state_never_acceptance(path: Path) -> None:
    store = SqliteStore(path)
    store.issue("alice", T0, T0 + 900)
    store.revoke_token("alice", "j", T0 + 900, T0)
    for suffix in ("", "-wal", "-shm"):
        side = path.with_name(path.name + suffix)
        if side.exists():
            side.unlink()
    state = store.fetch("alice", "j", None, T0 + 1)
    assert state.user is None
    assert state.global_ is None
    # the next write recreates the file and its tables, starting from the clock
    stamps = store.issue("alice", T0 + 2, T0 + 900)
    assert stamps.user_epoch == clock_epoch(T0 + 2)
    assert path.exists()
    store.close()


def test_a_corrupt_file_is_store_unavailable(path: Path) -> None:
    store = SqliteStore(path)
    store.issue("alice", T0, T0 + 900)
    for suffix in ("", "-wal", "-shm"):
        side = path.with_name(path.name + suffix)
        if side.exists():
            side.unlink()
    path.write_bytes(b"\x00garbage" * 512)
    with pytest.raises(StoreUnavailableError) as error:
        store.fetch("alice", None, None, T0)
    assert str(path) in str(error.value)
    with pytest.raises(StoreUnavailableError):
        store.issue("alice", T0, T0 + 900)
    store.close()


def test_the_store_recovers_when_the_file_comes_back(path: Path) -> None:
    store = SqliteStore(path)
    stamps = store.issue("alice", T0, T0 + 900)
    aside = path.with_name("aside.db")
    path.rename(aside)
    path.mkdir()
    with pytest.raises(StoreUnavailableError):
        store.fetch("alice", None, None, T0)
    with pytest.raises(StoreUnavailableError):
        store.bump_user("alice", T0, None, T0 + 3600)
    path.rmdir()
    aside.rename(path)
    user = store.fetch("alice", None, None, T0).user
    assert user is not None
    assert user.epoch == stamps.user_epoch
    assert store.bump_user("alice", T0, None, T0 + 3600).epoch == stamps.user_epoch + 1
    store.close()


def test_connections_are_per_thread_and_all_closed(path: Path) -> None:
    store = SqliteStore(path)
    store.issue("alice", T0, T0 + 900)
    results: list[object] = []

    def worker() -> None:
        results.append(store.fetch("alice", None, None, T0).user)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 4
    assert all(user is not None for user in results)
    store.close()
    assert store._file.connections == []


def test_urls_and_paths_open_sqlite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    relative = open_store("sqlite:///relative.db")
    assert relative.sync.kind == "sqlite"
    assert (tmp_path / "relative.db").exists()
    absolute = open_store(f"sqlite:///{tmp_path}/absolute.db")
    assert (tmp_path / "absolute.db").exists()
    by_path = open_store(tmp_path / "pathlike.db")
    assert (tmp_path / "pathlike.db").exists()
    for store in (relative, absolute, by_path):
        store.sync.close()


@pytest.mark.parametrize("bad", ["", ":memory:"])
def test_no_file_is_a_configuration_error(bad: str) -> None:
    with pytest.raises(ConfigurationError, match="memory://"):
        SqliteStore(bad)


def test_an_unwritable_location_is_logged_and_every_use_is_a_store_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Not a crash at start-up: the location may be a volume not mounted yet. Every use says why.
    path = tmp_path / "no" / "such" / "dir.db"
    store = SqliteStore(path)
    assert "directory exists" in caplog.text
    with pytest.raises(StoreUnavailableError, match="cannot be opened"):
        store.sync.fetch("alice", None, None, 0.0)
    path.parent.mkdir(parents=True)
    assert store.sync.setup(1.0).epoch > 0
    store.close()


# -- schema version 2: namespaces, and the upgrade of files written before ----------------------

# The schema of files written before namespaces (user_version 0), exactly as it was created.
SCHEMA_0 = """
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

# The very first schema: no session records, and revoked ids without their owner.
SCHEMA_FIRST = """
CREATE TABLE epochs (
    scope TEXT PRIMARY KEY, epoch INTEGER NOT NULL, created_at REAL NOT NULL, bumped_at REAL, reason TEXT,
    expires_at REAL
) WITHOUT ROWID;
CREATE INDEX epochs_expiry ON epochs (expires_at) WHERE expires_at IS NOT NULL;
CREATE TABLE revoked (kind TEXT NOT NULL, id TEXT NOT NULL, expires_at REAL NOT NULL, PRIMARY KEY (kind, id))
    WITHOUT ROWID;
CREATE INDEX revoked_expiry ON revoked (expires_at);
"""

LATER = 4_000_000_000.0  # the upgrade runs on the wall clock: rows live until then


def old_file(path: Path, schema: str = SCHEMA_0) -> sqlite3.Connection:
    conn = raw(path)
    conn.executescript(schema)
    conn.execute("INSERT INTO epochs VALUES ('g', 100, ?, ?, 'rotation', NULL)", (T0, T0 + 5))
    conn.execute("INSERT INTO epochs VALUES ('u:alice', 200, ?, ?, 'password', ?)", (T0, T0 + 1, LATER))
    conn.execute("INSERT INTO epochs VALUES ('u:bob', 300, ?, NULL, NULL, ?)", (T0, LATER))
    return conn


def test_a_file_of_the_old_schema_is_upgraded_into_the_root_namespace(path: Path) -> None:
    conn = old_file(path)
    conn.execute("INSERT INTO revoked VALUES ('j', 'jti-1', ?, 'alice')", (LATER,))
    conn.execute("INSERT INTO revoked VALUES ('s', 'old-revoked', ?, NULL)", (LATER,))
    conn.execute(
        "INSERT INTO sessions VALUES ('live', 7, 5, ?, ?, 'alice', ?, 5, 0)",
        (T0, LATER, T0 + 2),
    )
    conn.execute("INSERT INTO sessions VALUES ('dead', 9, 9, ?, ?, 'bob', NULL, NULL, 1)", (T0, LATER))
    conn.close()
    store = SqliteStore(path)
    try:
        check = raw(path)
        assert check.execute("PRAGMA user_version").fetchone()[0] == 2
        tables = {row[0] for row in check.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert tables == {"epochs", "revoked_tokens", "sessions"}
        check.close()
        now = T0 + 10
        global_ = store.get_global(now)
        assert global_ is not None
        assert (global_.epoch, global_.bumped_at, global_.reason) == (100, T0 + 5, "rotation")
        alice = store.fetch("alice", "jti-1", "live", now)
        assert alice.user is not None
        assert (alice.user.epoch, alice.user.reason) == (200, "password")
        assert alice.jti_revoked
        assert alice.session is not None
        assert (alice.session.generation, alice.session.previous, alice.session.uid) == (7, 5, "alice")
        assert not alice.session.grace_used
        assert not store.fetch("bob", "jti-1", None, now).jti_revoked  # the jti is alice's
        assert store.fetch("bob", None, "dead", now).session_revoked
        assert store.fetch("bob", None, "old-revoked", now).session_revoked
        stats = store.stats(now)
        assert (stats.users, stats.revoked_tokens, stats.sessions, stats.revoked_sessions) == (2, 1, 3, 2)
        # Nothing was left in another namespace, and the upgrade does not run again.
        assert list(store.with_namespace("other").sync.export_entries(now)) == []
        again = SqliteStore(path)
        assert again.get_global(now) == global_
        again.close()
    finally:
        store.close()


def test_unexpired_ownerless_jtis_make_the_upgrade_bump_the_global_epoch(
    path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    conn = old_file(path)
    conn.execute("INSERT INTO revoked VALUES ('j', 'orphan', ?, NULL)", (LATER,))
    conn.execute("INSERT INTO revoked VALUES ('j', 'owned', ?, 'alice')", (LATER,))
    conn.close()
    with caplog.at_level("WARNING", logger="authx_epoch"):
        store = SqliteStore(path)
    try:
        global_ = store.get_global(T0 + 10)
        assert global_ is not None
        # Moved past every stamp minted before: everyone logs in again, nothing revoked comes back.
        assert global_.epoch > 100
        assert global_.reason is not None
        assert "no owner" in global_.reason
        assert store.stats(T0 + 10).revoked_tokens == 1
        assert store.fetch("alice", "owned", None, T0 + 10).jti_revoked
        assert [record.levelname for record in caplog.records] == ["WARNING"]
        assert "bumped" in caplog.records[0].getMessage()
    finally:
        store.close()


def test_expired_ownerless_jtis_need_no_bump(path: Path, caplog: pytest.LogCaptureFixture) -> None:
    conn = old_file(path)
    conn.execute("INSERT INTO revoked VALUES ('j', 'orphan', ?, NULL)", (T0 + 900,))
    conn.close()
    with caplog.at_level("WARNING", logger="authx_epoch"):
        store = SqliteStore(path)
    global_ = store.get_global(T0)
    assert global_ is not None
    assert global_.epoch == 100
    assert caplog.records == []
    store.close()


def test_the_first_schema_is_upgraded_too(path: Path) -> None:
    # Revoked session ids become revoked session records; revoked jtis had no owner: a bump.
    conn = old_file(path, SCHEMA_FIRST)
    conn.execute("INSERT INTO revoked VALUES ('s', 'sess', ?)", (LATER,))
    conn.execute("INSERT INTO revoked VALUES ('j', 'jti', ?)", (LATER,))
    conn.close()
    store = SqliteStore(path)
    assert store.fetch("alice", "jti", "sess", T0).session_revoked
    global_ = store.get_global(T0)
    assert global_ is not None
    assert global_.epoch > 100
    store.close()


def test_processes_opening_an_old_file_together_upgrade_it_once(path: Path, caplog: pytest.LogCaptureFixture) -> None:
    conn = old_file(path)
    conn.execute("INSERT INTO revoked VALUES ('j', 'orphan', ?, NULL)", (LATER,))
    conn.close()
    stores: list[SqliteStore] = []
    errors: list[BaseException] = []
    start = threading.Barrier(6)

    def open_it() -> None:
        start.wait()
        try:
            stores.append(SqliteStore(path))
        except BaseException as exc:  # collected for the assertion below
            errors.append(exc)

    with caplog.at_level("WARNING", logger="authx_epoch"):
        threads = [threading.Thread(target=open_it) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert errors == []
    assert len([r for r in caplog.records if "upgrade" in r.getMessage()]) == 1
    users = {store.get_user("alice", T0) for store in stores}
    assert len(users) == 1
    for store in stores:
        store.close()


def test_an_old_file_swapped_in_under_a_live_store_is_upgraded_on_the_next_read(path: Path, tmp_path: Path) -> None:
    store = SqliteStore(path)
    store.issue("carol", T0, T0 + 900)
    other = tmp_path / "old.db"
    old_file(other).close()
    for suffix in ("-wal", "-shm"):
        side = path.with_name(path.name + suffix)
        if side.exists():
            side.unlink()
    other.replace(path)
    user = store.fetch("alice", None, None, T0).user
    assert user is not None
    assert user.epoch == 200
    assert store.get_user("carol", T0) is None
    store.close()


def test_a_file_of_a_newer_schema_is_refused(path: Path) -> None:
    SqliteStore(path).close()
    conn = raw(path)
    conn.execute("PRAGMA user_version = 3")
    conn.close()
    with pytest.raises(ConfigurationError, match="newer authx-epoch"):
        SqliteStore(path)


def test_namespaces_share_the_file_and_its_connections(path: Path) -> None:
    store = SqliteStore(path)
    admin = store.with_namespace("admin")
    assert isinstance(admin, SqliteStore)
    assert admin._file is store._file
    admin.issue("alice", T0, T0 + 900)
    assert store.get_user("alice", T0) is None
    rows = raw(path).execute("SELECT ns, scope FROM epochs ORDER BY ns, scope").fetchall()
    assert rows == [("admin", "g"), ("admin", "u:alice")]
    admin.close()  # a view: the store's connections stay open
    assert store._file.connections
    store.close()
    assert store._file.connections == []
    # A store opened in a namespace owns its connections.
    named = SqliteStore(path, namespace="admin")
    assert named.get_user("alice", T0) is not None
    named.close()
    assert named._file.connections == []


def test_the_location_is_the_real_path(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = SqliteStore(path)
    assert store.location == f"sqlite:///{path.resolve()}"
    assert store.location.startswith("sqlite:////")
    monkeypatch.chdir(tmp_path)
    relative = open_store("sqlite:///revocation.db")
    link = tmp_path / "link.db"
    link.symlink_to(path)
    linked = SqliteStore(link)
    assert relative.location == store.location == linked.location
    for each in (store, relative, linked):
        each.sync.close()

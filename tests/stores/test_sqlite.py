"""What only the SQLite store promises: WAL, durability, one query per check, lazy purge, sharing a file."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from authx_epoch import ConfigurationError, SqliteStore, StoreUnavailableError, open_store
from authx_epoch.records import clock_epoch

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


def test_a_check_is_one_sql_statement(path: Path) -> None:
    store = SqliteStore(path)
    store.issue("alice", T0, T0 + 900)
    store.fetch("alice", "j", "s", T0)  # open the reader connection
    conn = store._connection(write=False)
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    state = store.fetch("alice", "j", "s", T0)
    conn.set_trace_callback(None)
    assert state.user is not None
    assert state.global_ is not None
    assert len(statements) == 1
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


def test_an_unwritable_location_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="directory exists"):
        SqliteStore(tmp_path / "no" / "such" / "dir.db")

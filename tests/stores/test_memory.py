"""What only the memory store promises: one process, bounded by its live entries, thread-safe bumps."""

from __future__ import annotations

import threading

import pytest

from authx_epoch import MemoryStore, open_store

pytestmark = pytest.mark.memory

T0 = 1_700_000_000.0


def test_memory_url_opens_a_fresh_store_each_time() -> None:
    one, two = open_store("memory://"), open_store("memory://")
    assert isinstance(one, MemoryStore)
    assert one is not two
    one.sync.issue("alice", T0, T0 + 900)
    # not shared: each store is one process's own dictionaries
    assert two.sync.get_user("alice", T0) is None


def test_expired_entries_are_swept_by_ordinary_writes() -> None:
    store = MemoryStore()
    for i in range(500):
        store.revoke_token("alice", f"old-{i}", T0 + 10, T0)
        store.revoke_session(f"sold-{i}", T0 + 10, T0)
        store.issue(f"user-{i}", T0, T0 + 10)
    later = T0 + 10_000
    for i in range(100):
        store.revoke_token("bob", f"new-{i}", later + 900, later)
        store.issue(f"fresh-{i}", later, later + 900)
    # no cleanup job: what remains is (close to) the live entries only
    assert len(store._tokens) == 100
    assert len(store._sessions) == 0
    assert len(store._users) == 100


def test_live_entries_survive_the_sweep() -> None:
    store = MemoryStore()
    for i in range(200):
        store.revoke_token("alice", f"live-{i}", T0 + 10_000, T0)
    for i in range(200):
        store.revoke_session(f"s-{i}", T0 + 10_000, T0 + 1)
    assert all(store.fetch("alice", f"live-{i}", None, T0 + 2).jti_revoked for i in range(200))


def test_concurrent_bumps_from_threads_lose_no_increment() -> None:
    store = MemoryStore()
    start = store.issue("alice", T0, T0 + 900).user_epoch
    returned: list[int] = []
    lock = threading.Lock()

    def hammer() -> None:
        mine = [store.bump_user("alice", T0, None, T0 + 3600).epoch for _ in range(200)]
        with lock:
            returned.extend(mine)

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(returned) == list(range(start + 1, start + 1601))
    user = store.get_user("alice", T0)
    assert user is not None
    assert user.epoch == start + 1600

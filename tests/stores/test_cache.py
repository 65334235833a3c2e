"""The local cache (``authx_epoch.stores.cache``) against real Redis servers.

The contract suite already runs through the cache (``cached_redis_store`` in tests/backends.py);
this file covers what only the cache has: the staleness bound (on an injected monotonic clock),
own writes seen at once, other processes' writes seen through the channel, the size bound, and
what happens when the channel drops. Waiting for the subscriber thread is a bounded poll.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import pytest

from authx_epoch import MemoryStore, SqliteStore
from authx_epoch.errors import ConfigurationError, StoreUnavailableError
from authx_epoch.records import CheckState, EpochRecord, SnapshotEntry
from authx_epoch.stores import Store, SyncStore, open_store
from tests.helpers import bearer, build_app, client
from tests.plugins.redis_servers import RedisServer, unique_prefix

pytest.importorskip("redis")
import redis

from authx_epoch.stores.cache import MAX_JTIS_PER_USER, LocalCache, cache_options
from authx_epoch.stores.cache.memory import KEEP_WARM, REREAD, Memory
from authx_epoch.stores.redis import RedisStore
from authx_epoch.stores.redis.requests import Eval
from authx_epoch.stores.redis.values import encode_record
from authx_epoch.stores.redis.views import VIEW_FIELDS
from authx_epoch.stores.url import StoreURL

pytestmark = pytest.mark.redis

NOW = 1_800_000_000.0
HOUR = 3600.0


class Mono:
    """A monotonic clock the test moves by hand (the cache's clock for the age of answers)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> float:
    """Poll until ``predicate`` holds; return how long it took (fail after ``timeout``)."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            pytest.fail(f"condition not reached within {timeout} s")
        time.sleep(0.002)  # waiting for another thread, not for a clock
    return time.monotonic() - started


@pytest.fixture
def mono() -> Mono:
    return Mono()


@pytest.fixture
def prefix() -> str:
    return unique_prefix()


@pytest.fixture
def inner(redis_url: str, prefix: str) -> Iterator[RedisStore]:
    store = RedisStore.from_url(redis_url, prefix=prefix)
    yield store
    store.sync.wipe()
    store.close()


def connected_cache(store: Any, **options: Any) -> LocalCache:
    cache = LocalCache(store, **options)
    cache.start()
    wait_until(lambda: cache.connected)
    return cache


@pytest.fixture
def cache(inner: RedisStore, mono: Mono) -> Iterator[LocalCache]:
    cached = connected_cache(inner, clock=mono)
    yield cached
    cached._channel.stop()


@pytest.fixture
def memory_cache(redis_url: str, mono: Mono) -> Iterator[tuple[LocalCache, MemoryStore]]:
    """A cache over a memory store (no versions), its channel on the test Redis."""
    client = redis.Redis.from_url(redis_url)
    store = MemoryStore()
    cache = connected_cache(store, client=client, prefix=unique_prefix(), clock=mono)
    yield cache, store
    cache.close()
    client.close()


def seed(store: Any) -> None:
    store.sync.setup(NOW)
    store.sync.issue("alice", NOW, NOW + HOUR, "s1")


# -- options ---------------------------------------------------------------------------------


def test_url_option_wraps_the_redis_store(redis_url: str) -> None:
    store = open_store(f"{redis_url}?local_cache=1&cache_staleness=0.25&cache_max_entries=50&prefix=p1")
    try:
        assert isinstance(store, LocalCache)
        assert isinstance(store.inner, RedisStore)
        assert store.staleness == 0.25
        assert store._memory.max_entries == 50
        assert store.channel == "p1:changes"
        assert store.sync.kind == store.aio.kind == "redis"
    finally:
        store.close()
    plain = open_store(f"{redis_url}?local_cache=0")
    assert isinstance(plain, RedisStore)
    plain.close()


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("local_cache=maybe", "local_cache must be 1 or 0"),
        ("cache_staleness=0.5", "needs local_cache=1"),
        ("local_cache=0&cache_max_entries=5", "needs local_cache=1"),
        ("local_cache=1&cache_staleness=0", "staleness"),
        ("local_cache=1&cache_staleness=61", "staleness"),
        ("local_cache=1&cache_staleness=soon", "staleness"),
        ("local_cache=1&cache_max_entries=0", "max_entries"),
        ("local_cache=1&cache_max_entries=1.5", "max_entries"),
    ],
)
def test_bad_url_options_are_configuration_errors(query: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        open_store(f"redis://127.0.0.1:6379/0?{query}")


def test_cache_options_leave_the_others_in_place() -> None:
    url = StoreURL.parse("unix:///tmp/r.sock?db=2&local_cache=yes&prefix=x")
    assert url.driver_url == "unix:///tmp/r.sock?db=2"
    assert url.option("prefix") == "x"
    assert cache_options(url) == {}
    assert cache_options(StoreURL.parse("redis://h:1/0?db=1")) is None


def test_a_store_without_redis_needs_a_client_and_a_prefix() -> None:
    with pytest.raises(ConfigurationError, match="carries its invalidations on Redis"):
        LocalCache(MemoryStore())
    with pytest.raises(ConfigurationError, match="wraps a store"):
        LocalCache("redis://localhost")  # type: ignore[arg-type]


def test_a_memory_store_can_be_cached_with_a_given_channel(memory_cache: tuple[LocalCache, MemoryStore]) -> None:
    cache, _ = memory_cache
    seed(cache)
    assert cache.sync.fetch("alice", None, None, NOW).user is not None


# -- answers from memory and the staleness bound ----------------------------------------------


def test_a_write_behind_the_caches_back_is_seen_at_the_next_revalidation(
    cache: LocalCache, inner: RedisStore, mono: Mono
) -> None:
    seed(cache)
    before = cache.sync.fetch("alice", "j1", "s1", NOW)
    assert before.user is not None
    # Written behind the cache's back (no message): only a revalidation, every staleness / 2, or
    # the staleness bound can reveal it.
    inner.sync.bump_user("alice", NOW, "behind", NOW + HOUR)
    inner.sync.revoke_token("alice", "j1", NOW + HOUR, NOW)
    mono.advance(0.499)
    assert cache.sync.fetch("alice", "j1", "s1", NOW) == before
    mono.advance(0.002)
    after = cache.sync.fetch("alice", "j1", "s1", NOW)
    assert after.user is not None
    assert after.user.epoch > before.user.epoch
    assert after.jti_revoked


def test_a_custom_staleness_sets_the_revalidation_interval(inner: RedisStore, mono: Mono) -> None:
    cache = connected_cache(inner, clock=mono, staleness=0.25)
    try:
        seed(cache)
        first = cache.sync.fetch("alice", None, None, NOW)
        inner.sync.bump_user("alice", NOW, None, NOW + HOUR)
        mono.advance(0.12)
        assert cache.sync.fetch("alice", None, None, NOW) == first
        mono.advance(0.01)
        assert cache.sync.fetch("alice", None, None, NOW) != first
    finally:
        cache._channel.stop()


def test_without_revalidation_answers_last_until_the_staleness_bound(
    memory_cache: tuple[LocalCache, MemoryStore], mono: Mono
) -> None:
    # A store that keeps no versions (here a memory store, the channel on Redis) is never
    # revalidated: an answer lives exactly ``staleness``.
    cache, inner = memory_cache
    seed(cache)
    before = cache.sync.fetch("alice", "j1", None, NOW)
    inner.sync.bump_user("alice", NOW, "behind", NOW + HOUR)
    mono.advance(0.999)
    assert cache.sync.fetch("alice", "j1", None, NOW) == before
    mono.advance(0.002)
    assert cache.sync.fetch("alice", "j1", None, NOW) != before


def test_a_write_that_moves_no_version_is_seen_within_the_reread_bound(
    cache: LocalCache, inner: RedisStore, mono: Mono
) -> None:
    # A writer of an older release (or a hand edit) changes the record without moving ``v``: the
    # confirmations cannot see it, but a user is read whole again every REREAD intervals.
    seed(cache)
    before = cache.sync.fetch("alice", None, None, NOW)
    assert before.user is not None
    newer = replace(before.user, epoch=before.user.epoch + 1)
    inner.blocking_client().hset(inner._keys.user_key("alice"), "r", encode_record(newer))
    seen_at = None
    for step in range(1, int((REREAD + 2) / 0.3)):
        mono.advance(0.3)
        state = cache.sync.fetch("alice", None, None, NOW)
        if state != before:
            seen_at = step * 0.3
            break
    assert seen_at is not None
    assert REREAD - 1 < seen_at <= REREAD + 1
    assert state.user == newer


def test_every_part_must_be_present(cache: LocalCache, inner: RedisStore) -> None:
    seed(cache)
    cache.sync.fetch("alice", "j1", None, NOW)
    inner.sync.revoke_session("s2", NOW + HOUR, NOW)
    # The user is in memory, but not session s2: the check goes to the store.
    assert cache.sync.fetch("alice", None, "s2", NOW).session_revoked
    assert not cache.sync.fetch("alice", "j1", None, NOW).jti_revoked


class Requests:
    """Records the requests a Redis store's flows send, and runs an action before or after one of them.

    It wraps the real store's I/O (both sides): every request still reaches the real server.
    """

    def __init__(self, store: RedisStore, before: Any = None, after: Any = None) -> None:
        self.sent: list[Any] = []
        self.before = before or {}
        self.after = after or {}
        plain, awaited = store.execute, store.execute_async

        def execute(request: Any) -> Any:
            name = self._record(request)
            self.before.get(name, lambda: None)()
            answer = plain(request)
            self.after.get(name, lambda: None)()
            return answer

        async def execute_async(request: Any) -> Any:
            name = self._record(request)
            self.before.get(name, lambda: None)()
            answer = await awaited(request)
            self.after.get(name, lambda: None)()
            return answer

        store.execute = execute  # type: ignore[method-assign]
        store.execute_async = execute_async  # type: ignore[method-assign]

    def _record(self, request: Any) -> str:
        self.sent.append(request)
        return request.call.script.name if isinstance(request, Eval) else type(request).__name__

    @property
    def names(self) -> list[str]:
        return [
            request.call.script.name if isinstance(request, Eval) else type(request).__name__ for request in self.sent
        ]


def test_a_users_other_tokens_are_answered_from_memory(cache: LocalCache, inner: RedisStore) -> None:
    seed(cache)
    cache.sync.revoke_token("alice", "j3", NOW + HOUR, NOW)
    requests = Requests(inner)
    assert not cache.sync.fetch("alice", "j1", None, NOW).jti_revoked
    assert requests.names == ["view"]
    # One read of the user holds every revoked jti of it: the user's other tokens need none.
    assert not cache.sync.fetch("alice", "j2", None, NOW).jti_revoked
    assert cache.sync.fetch("alice", "j3", None, NOW).jti_revoked
    assert cache.sync.fetch("alice", None, None, NOW).user is not None
    assert requests.names == ["view"]
    # The revocation ends with its entry, at the store time asked for.
    assert not cache.sync.fetch("alice", "j3", None, NOW + HOUR + 1).jti_revoked


def test_an_unchanged_user_keeps_answering_past_the_staleness_bound(
    cache: LocalCache, inner: RedisStore, mono: Mono
) -> None:
    seed(cache)
    first = cache.sync.fetch("alice", "j1", "s1", NOW)
    requests = Requests(inner)
    for _ in range(40):  # 12 seconds, a check every 0.3 s
        mono.advance(0.3)
        assert cache.sync.fetch("alice", "j1", "s1", NOW) == first
    # Only reads of versions, at most one per staleness / 2: the user is never read again.
    assert set(requests.names) == {"versions"}
    assert 12 <= len(requests.names) <= 24
    keys = requests.sent[-1].call.keys
    assert keys == [inner._keys.global_key, inner._keys.user_key("alice"), inner._keys.session_key("s1")]


def test_only_recently_checked_users_are_revalidated(cache: LocalCache, inner: RedisStore, mono: Mono) -> None:
    seed(cache)
    cache.sync.fetch("alice", None, None, NOW)
    cache.sync.fetch("bob", None, None, NOW)
    requests = Requests(inner)
    for _ in range(int((KEEP_WARM * cache.staleness + 5) / 0.5)):
        mono.advance(0.5)
        cache.sync.fetch("bob", None, None, NOW)
    assert requests.sent[0].call.keys[1:] == [inner._keys.user_key(uid) for uid in ("alice", "bob")]
    assert requests.sent[-1].call.keys[1:] == [inner._keys.user_key("bob")]
    # Alice, no longer confirmed, is read again when she comes back.
    assert cache.sync.fetch("alice", None, None, NOW).user is not None
    assert requests.names[-1] == "view"


def test_a_user_with_very_many_revoked_tokens_is_read_token_by_token(cache: LocalCache, inner: RedisStore) -> None:
    seed(cache)
    for index in range(VIEW_FIELDS):
        inner.sync.revoke_token("alice", f"r{index}", NOW + HOUR, NOW)
    requests = Requests(inner)
    assert cache.sync.fetch("alice", "r1", None, NOW).jti_revoked
    assert not cache.sync.fetch("alice", "fresh", None, NOW).jti_revoked
    assert cache.sync.fetch("alice", "r2", None, NOW).jti_revoked
    assert requests.names == ["view", "view", "view"]
    # Answers about one token are still kept.
    assert cache.sync.fetch("alice", "r1", None, NOW).jti_revoked
    assert not cache.sync.fetch("alice", "fresh", None, NOW).jti_revoked
    assert requests.names == ["view", "view", "view"]


def test_every_write_moves_the_users_version_past_the_servers_clock(inner: RedisStore) -> None:
    client = inner.blocking_client()
    key = inner._keys.user_key("alice")

    def version() -> int:
        return int(client.hget(key, "v"))

    inner.sync.setup(NOW)
    inner.sync.issue("alice", NOW, NOW + 60)
    seconds, micros = client.time()
    assert abs(version() - (seconds * 1_000_000 + micros)) < 5_000_000
    seen = [version()]
    inner.sync.issue("alice", NOW, NOW + 60)  # nothing to write: the version stays
    assert version() == seen[-1]
    inner.sync.issue("alice", NOW, NOW + 100 * HOUR)  # extends the record
    seen.append(version())
    inner.sync.bump_user("alice", NOW, None, NOW + 100 * HOUR)
    seen.append(version())
    inner.sync.revoke_token("alice", "j1", NOW + HOUR, NOW)
    seen.append(version())
    newer = EpochRecord(epoch=10**18, created_at=NOW, expires_at=NOW + HOUR)
    assert inner.sync.import_entries([SnapshotEntry(kind="user", key="alice", record=newer)], NOW) == 1
    seen.append(version())
    # Gone (expired, evicted, wiped) and created again: never a version a cache may still hold.
    client.delete(key)
    inner.sync.issue("alice", NOW, NOW + HOUR)
    seen.append(version())
    assert seen == sorted(set(seen)), seen


@pytest.mark.parametrize("scope", ["user", "global"])
@pytest.mark.parametrize("moment", ["before", "after"])
def test_an_own_write_racing_a_revalidation_is_seen(
    cache: LocalCache, inner: RedisStore, mono: Mono, scope: str, moment: str
) -> None:
    seed(cache)
    before = cache.sync.fetch("alice", None, None, NOW)

    def write() -> None:
        if scope == "user":
            cache.sync.bump_user("alice", NOW, "race", NOW + HOUR)
        else:
            cache.sync.bump_global(NOW, "race")

    Requests(inner, **{moment: {"versions": write}})
    mono.advance(0.6)
    after = cache.sync.fetch("alice", None, None, NOW)
    assert after.user is not None
    assert before.user is not None
    assert after.global_ is not None
    assert before.global_ is not None
    if scope == "user":
        assert after.user.epoch > before.user.epoch
    else:
        assert after.global_.epoch > before.global_.epoch


@pytest.mark.parametrize("side", ["sync", "aio"])
def test_a_large_confirmation_is_sent_in_batches_at_once(
    cache: LocalCache, inner: RedisStore, mono: Mono, monkeypatch: pytest.MonkeyPatch, side: str
) -> None:
    monkeypatch.setattr("authx_epoch.stores.redis.views.VERSIONS_BATCH", 2)
    cache.sync.setup(NOW)
    users = [f"user-{index}" for index in range(5)]
    for index, uid in enumerate(users):
        cache.sync.issue(uid, NOW, NOW + HOUR, f"s-{index}")
    inner.sync.bump_user("user-3", NOW, "behind", NOW + HOUR)  # read next, then moved behind the back

    async def checks() -> list[CheckState]:
        found = []
        for index, uid in enumerate(users):
            found.append(await cache.aio.fetch(uid, "j", f"s-{index}", NOW))
        return found

    def run_checks() -> list[CheckState]:
        if side == "aio":
            return asyncio.run(checks())
        return [cache.sync.fetch(uid, "j", f"s-{index}", NOW) for index, uid in enumerate(users)]

    first = run_checks()
    inner.sync.bump_user("user-3", NOW, "behind again", NOW + HOUR)
    requests = Requests(inner)
    mono.advance(0.6)
    later = run_checks()
    # One confirmation of 5 users and 5 sessions: five scripts of two keys (plus the global
    # record) sent together, then one read of the user whose version moved.
    assert requests.names == ["Together", *["versions"] * 5, "view"]  # the parts pass through execute too
    assert [len(part.call.keys) for part in requests.sent[0].requests] == [3, 3, 3, 3, 3]
    assert later[:3] == first[:3]
    assert later[4] == first[4]
    assert later[3].user is not None
    assert first[3].user is not None
    assert later[3].user.epoch > first[3].user.epoch


def test_a_failed_revalidation_keeps_the_staleness_bound(cache: LocalCache, inner: RedisStore, mono: Mono) -> None:
    seed(cache)
    before = cache.sync.fetch("alice", None, None, NOW)
    inner.sync.bump_user("alice", NOW, "behind", NOW + HOUR)

    def fail() -> None:
        raise redis.ConnectionError("injected")

    Requests(inner, before={"versions": fail})
    mono.advance(0.6)
    assert cache.sync.fetch("alice", None, None, NOW) == before  # still within the bound
    mono.advance(0.41)
    after = cache.sync.fetch("alice", None, None, NOW)
    assert after.user is not None
    assert before.user is not None
    assert after.user.epoch > before.user.epoch
    # With the store down for good, the check reports it (the documented 503), never an old answer.
    Requests(inner, before={"view": fail, "versions": fail})
    mono.advance(1.1)
    with pytest.raises(StoreUnavailableError):
        cache.sync.fetch("alice", None, None, NOW)


def test_the_async_side_revalidates_too(cache: LocalCache, inner: RedisStore, mono: Mono) -> None:
    seed(cache)

    async def scenario() -> tuple[CheckState, CheckState, list[str]]:
        first = await cache.aio.fetch("alice", "j1", None, NOW)
        requests = Requests(inner)
        for _ in range(10):
            mono.advance(0.3)
            assert await cache.aio.fetch("alice", "j2", None, NOW) == first
        inner.sync.revoke_token("alice", "j2", NOW + HOUR, NOW)
        mono.advance(0.6)
        later = await cache.aio.fetch("alice", "j2", None, NOW)
        await cache.aio.close()
        return first, later, requests.names

    first, later, names = asyncio.run(scenario())
    assert not first.jti_revoked
    assert later.jti_revoked
    reads = [name for name in names if name != "revoke"]  # the write behind the cache's back
    assert set(reads[:-1]) == {"versions"}
    assert reads[-1] == "view"


def test_a_store_clock_far_from_the_confirmation_reads_the_store(cache: LocalCache, inner: RedisStore) -> None:
    seed(cache)
    cache.sync.revoke_token("alice", "j1", NOW + 60, NOW)
    assert cache.sync.fetch("alice", "j1", None, NOW).jti_revoked
    # An hour later (by the store's clock) the revocation has expired: memory must not say otherwise.
    assert not cache.sync.fetch("alice", "j1", None, NOW + HOUR).jti_revoked


def test_a_record_that_expires_while_held_counts_as_missing(cache: LocalCache) -> None:
    cache.sync.setup(NOW)
    cache.sync.bump_user("bob", NOW, None, NOW + 0.5)
    assert cache.sync.fetch("bob", None, None, NOW).user is not None
    assert cache.sync.fetch("bob", None, None, NOW + 0.6).user is None


# -- writes ----------------------------------------------------------------------------------


def test_own_writes_are_seen_at_once(cache: LocalCache) -> None:
    seed(cache)
    state = cache.sync.fetch("alice", "j1", "s1", NOW)
    assert not state.jti_revoked
    assert not state.session_revoked
    assert state.user is not None
    assert state.global_ is not None
    # The clock is frozen: only the cache's own invalidation can make these visible.
    bumped = cache.sync.bump_user("alice", NOW, "r", NOW + HOUR)
    assert cache.sync.fetch("alice", "j1", "s1", NOW).user == bumped
    cache.sync.revoke_token("alice", "j1", NOW + HOUR, NOW)
    assert cache.sync.fetch("alice", "j1", "s1", NOW).jti_revoked
    cache.sync.revoke_session("s1", NOW + HOUR, NOW)
    assert cache.sync.fetch("alice", "j1", "s1", NOW).session_revoked
    moved = cache.sync.bump_global(NOW, "all")
    assert cache.sync.fetch("alice", "j1", "s1", NOW).global_ == moved
    cache.sync.wipe()
    assert cache.sync.fetch("alice", "j1", "s1", NOW) == CheckState(None, None)


def test_a_rotation_is_seen_at_once(cache: LocalCache) -> None:
    seed(cache)
    session = cache.sync.fetch("alice", None, "s1", NOW).session
    assert session is not None
    outcome = cache.sync.rotate_session("s1", "alice", session.generation, NOW + 1, 10.0, NOW + HOUR)
    assert outcome.session is not None
    assert cache.sync.fetch("alice", None, "s1", NOW + 1).session == outcome.session


def test_a_mint_after_a_lost_record_is_seen_at_once(cache: LocalCache, inner: RedisStore) -> None:
    cache.sync.setup(NOW)
    assert cache.sync.fetch("carol", None, None, NOW).user is None
    stamps = cache.sync.issue("carol", NOW, NOW + HOUR)
    user = cache.sync.fetch("carol", None, None, NOW).user
    assert user is not None
    assert user.epoch == stamps.user_epoch


def test_an_import_of_session_records_is_seen_at_once(cache: LocalCache) -> None:
    seed(cache)
    live = cache.sync.fetch("alice", None, "s1", NOW).session
    assert live is not None
    assert cache.sync.fetch("alice", None, "s2", NOW).session is None
    # Another store's view of s1 (rotated since) and of s2 (revoked there), moved by export/import.
    ahead = replace(live, generation=live.generation + 5, previous=live.generation, rotated_at=NOW)
    gone = replace(live, revoked=True)
    entries = [
        SnapshotEntry("session", sid, expires_at=r.expires_at, session=r) for sid, r in (("s1", ahead), ("s2", gone))
    ]
    # The clock is frozen: only the cache's own invalidation can make the import visible.
    assert cache.sync.import_entries(entries, NOW) == 2
    assert cache.sync.fetch("alice", None, "s1", NOW).session == ahead
    assert cache.sync.fetch("alice", None, "s2", NOW).session_revoked

    async def scenario() -> None:
        assert (await cache.aio.fetch("alice", None, "s3", NOW)).session is None
        assert cache.sync.import_entries([replace(entries[1], key="s3")], NOW) == 1
        assert (await cache.aio.fetch("alice", None, "s3", NOW)).session_revoked

    asyncio.run(scenario())


def test_async_side_shares_memory_and_sees_its_writes(cache: LocalCache, inner: RedisStore, mono: Mono) -> None:
    async def scenario() -> None:
        await cache.aio.setup(NOW)
        await cache.aio.issue("alice", NOW, NOW + HOUR)
        first = await cache.aio.fetch("alice", "j1", None, NOW)
        assert cache.sync.fetch("alice", "j1", None, NOW) == first
        inner.sync.bump_user("alice", NOW, None, NOW + HOUR)
        assert await cache.aio.fetch("alice", "j1", None, NOW) == first
        await cache.aio.revoke_token("alice", "j1", NOW + HOUR, NOW)
        again = await cache.aio.fetch("alice", "j1", None, NOW)
        assert again.jti_revoked
        assert again.user != first.user

    asyncio.run(scenario())


def test_another_instance_sees_a_write_through_the_channel(inner: RedisStore, cache: LocalCache, mono: Mono) -> None:
    other_store = RedisStore.from_url(_url_of(inner), prefix=inner.prefix)
    other = connected_cache(other_store, clock=Mono())
    try:
        seed(cache)
        assert not cache.sync.fetch("alice", "j1", None, NOW).jti_revoked
        old = cache.sync.fetch("alice", "j1", None, NOW).user
        other.sync.revoke_token("alice", "j1", NOW + HOUR, NOW)
        # ``mono`` is frozen, so only the channel's message can end the "not revoked" answer.
        wait_until(lambda: cache.sync.fetch("alice", "j1", None, NOW).jti_revoked)
        bumped = other.sync.bump_user("alice", NOW, None, NOW + HOUR)
        assert bumped.epoch != (old.epoch if old else None)
        wait_until(lambda: cache.sync.fetch("alice", "j1", None, NOW).user == bumped)
        moved = other.sync.bump_global(NOW, None)
        wait_until(lambda: cache.sync.fetch("alice", None, None, NOW).global_ == moved)
    finally:
        other.close()


def test_a_namespace_view_has_its_own_memory_and_channel(inner: RedisStore, cache: LocalCache) -> None:
    admin = cache.with_namespace("admin")
    assert isinstance(admin, LocalCache)
    admin.start()
    wait_until(lambda: admin.connected)  # its own subscriber: answers are kept only once it listens
    try:
        assert cache.channel == f"{inner.prefix}:changes"
        assert admin.channel == f"{inner.prefix}~admin:changes"
        assert (admin.namespace, admin.location) == ("admin", cache.location)
        assert admin.inner.namespace == "admin"
        seed(cache)
        seed(admin)
        cache.sync.fetch("alice", "j1", "s1", NOW)
        assert admin.size == (0, 0)
        admin.sync.revoke_token("alice", "j1", NOW + HOUR, NOW)
        assert admin.sync.fetch("alice", "j1", None, NOW).jti_revoked
        assert not cache.sync.fetch("alice", "j1", None, NOW).jti_revoked
        assert admin.size == (1, 0)
    finally:
        admin.sync.wipe()
        admin.close()
    # Closing the view stopped its subscriber only: the root cache and its store go on.
    assert cache.connected
    assert cache.sync.fetch("alice", None, None, NOW).user is not None


def test_another_instance_sees_a_write_in_its_namespace_and_only_there(inner: RedisStore, mono: Mono) -> None:
    first = connected_cache(inner.with_namespace("admin"), clock=mono)
    second_store = RedisStore.from_url(_url_of(inner), prefix=inner.prefix, namespace="admin")
    second = connected_cache(second_store, clock=Mono())
    root = connected_cache(RedisStore.from_url(_url_of(inner), prefix=inner.prefix), clock=Mono())
    try:
        seed(first)
        seed(root)
        assert not first.sync.fetch("alice", "j1", None, NOW).jti_revoked
        assert not root.sync.fetch("alice", "j1", None, NOW).jti_revoked
        second.sync.revoke_token("alice", "j1", NOW + HOUR, NOW)
        # ``mono`` is frozen: only a message on the namespace's channel ends the cached answer.
        wait_until(lambda: first.sync.fetch("alice", "j1", None, NOW).jti_revoked)
        assert not root.sync.fetch("alice", "j1", None, NOW).jti_revoked
    finally:
        first.sync.wipe()
        for each in (first, second, root):
            each.close()


def _url_of(store: RedisStore) -> str:
    kwargs = store.blocking_client().connection_pool.connection_kwargs  # type: ignore[attr-defined]
    return f"redis://{kwargs['host']}:{kwargs['port']}/{kwargs.get('db', 0)}"


def test_a_malformed_message_clears_everything(cache: LocalCache, redis_url: str) -> None:
    seed(cache)
    cache.sync.fetch("alice", "j1", "s1", NOW)
    assert cache.size == (1, 1)
    publisher = redis.Redis.from_url(redis_url)
    try:
        publisher.publish(cache.channel, b"\xc1 not msgpack")
    finally:
        publisher.close()
    wait_until(lambda: cache.size == (0, 0))


# -- bounds ----------------------------------------------------------------------------------


def test_entries_are_bounded(inner: RedisStore, mono: Mono) -> None:
    cache = connected_cache(inner, clock=mono, max_entries=3)
    try:
        cache.sync.setup(NOW)
        for index in range(10):
            cache.sync.fetch(f"user-{index}", "j", f"s-{index}", NOW)
        assert cache.size == (3, 3)
        # The evicted users' digests went with them: an invalidation for one finds nothing to drop.
        assert len(cache._memory._user_of) == 3
    finally:
        cache._channel.stop()


def test_per_token_answers_are_bounded_per_user(memory_cache: tuple[LocalCache, MemoryStore]) -> None:
    # Over a store without versions, answers are kept token by token, at most MAX_JTIS_PER_USER.
    cache, store = memory_cache
    cache.sync.setup(NOW)
    for index in range(MAX_JTIS_PER_USER + 10):
        cache.sync.fetch("user-9", f"jti-{index}", None, NOW)
    assert len(cache._memory._users["user-9"].jtis) == MAX_JTIS_PER_USER
    # The newest answers are the ones kept, and they still answer from memory.
    store.sync.revoke_token("user-9", f"jti-{MAX_JTIS_PER_USER + 9}", NOW + HOUR, NOW)
    assert not cache.sync.fetch("user-9", f"jti-{MAX_JTIS_PER_USER + 9}", None, NOW).jti_revoked
    # The oldest was dropped: asking for it reads the store, which has it revoked now.
    store.sync.revoke_token("user-9", "jti-0", NOW + HOUR, NOW)
    assert cache.sync.fetch("user-9", "jti-0", None, NOW).jti_revoked


def test_an_answer_read_before_an_invalidation_is_not_kept() -> None:
    mono = Mono()
    memory = Memory(1.0, 10, mono)
    memory.set_live(True)
    record = EpochRecord(epoch=1, created_at=NOW)
    generation = memory.generation
    memory.forget([("u", b"someone-else")])  # arrives while the store read is in flight
    memory.remember(generation, mono(), "alice", None, None, NOW, CheckState(record, record))
    assert memory.answer("alice", None, None, NOW) is None
    memory.remember(memory.generation, mono(), "alice", None, None, NOW, CheckState(record, record))
    assert memory.answer("alice", None, None, NOW) == CheckState(record, record)


# -- the channel drops -------------------------------------------------------------------------


def test_a_dropped_channel_clears_and_every_check_reads_the_store(private_redis: RedisServer) -> None:
    mono = Mono()
    inner = RedisStore.from_url(private_redis.url, prefix=unique_prefix())
    cache = connected_cache(inner, clock=mono, staleness=0.3)
    try:
        seed(cache)
        assert cache.sync.fetch("alice", None, None, NOW).user is not None
        assert cache.size == (1, 0)
        private_redis.stop()
        wait_until(lambda: not cache.connected)
        assert cache.size == (0, 0)
        # The answer was fresh by the injected clock, yet the check goes to the (dead) store.
        with pytest.raises(StoreUnavailableError):
            cache.sync.fetch("alice", None, None, NOW)
        private_redis.start()
        wait_until(lambda: cache.connected)
        # A new Redis (no persistence): the cache holds nothing from before.
        assert cache.sync.fetch("alice", None, None, NOW).user is None
    finally:
        cache.close()


def test_a_killed_subscription_is_resubscribed_with_an_empty_cache(cache: LocalCache, inner: RedisStore) -> None:
    seed(cache)
    cache.sync.fetch("alice", None, None, NOW)
    reconnects = cache._channel.reconnects
    killer = inner.blocking_client()  # type: ignore[attr-defined]
    killer.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
    wait_until(lambda: cache._channel.reconnects > reconnects and cache.connected)
    assert cache.size == (0, 0)
    # Written while no message could arrive: seen because the cache started over.
    inner.sync.bump_user("alice", NOW, None, NOW + HOUR)
    assert cache.sync.fetch("alice", None, None, NOW).user == inner.sync.get_user("alice", NOW)


def test_a_closed_cache_never_answers_from_memory(inner: RedisStore, mono: Mono) -> None:
    cache = connected_cache(inner, clock=mono)
    seed(cache)
    cache.sync.fetch("alice", None, None, NOW)
    cache._channel.stop()
    assert not cache.connected
    inner.sync.bump_user("alice", NOW, None, NOW + HOUR)
    assert cache.sync.fetch("alice", None, None, NOW).user == inner.sync.get_user("alice", NOW)
    assert cache.size == (0, 0)


# -- through AuthX ---------------------------------------------------------------------------


@pytest.mark.anyio
async def test_an_app_on_the_cached_url_rejects_at_once_after_its_own_writes(redis_url: str) -> None:
    url = f"{redis_url}?local_cache=1&prefix={unique_prefix()}"
    harness = build_app(url)
    store = harness.rev.store
    assert isinstance(store, LocalCache)
    try:
        token = harness.auth.create_access_token(uid="alice")
        other = harness.auth.create_access_token(uid="alice")
        async with client(harness.app) as http:
            assert (await http.get("/protected", headers=bearer(token))).status_code == 200
            assert (await http.get("/protected", headers=bearer(other))).status_code == 200
            await harness.rev.revoke_token(token)
            assert (await http.get("/protected", headers=bearer(token))).status_code == 401
            assert (await http.get("/protected", headers=bearer(other))).status_code == 200
            await harness.rev.bump_user_epoch("alice", reason="logout everywhere")
            assert (await http.get("/protected", headers=bearer(other))).status_code == 401
    finally:
        store.sync.wipe()
        store.close()


@pytest.mark.parametrize("backend", [MemoryStore, SqliteStore, RedisStore, LocalCache])
def test_every_backend_implements_every_operation_with_the_contracts_parameters(backend: type) -> None:
    # A method added to the contract and forgotten in a backend (the cache passes each one on)
    # would reach the wrapped store only by luck: the parameters must match one for one.
    operations = SyncStore.operations()
    assert {"fetch", "issue", "stats", "wipe"} <= set(operations)
    for name in operations:
        implemented = inspect.signature(getattr(backend, name)).parameters
        declared = inspect.signature(getattr(Store, name)).parameters
        assert list(implemented) == list(declared), f"{backend.__name__}.{name}"
        assert getattr(backend, name) is not getattr(Store, name), f"{backend.__name__} lacks {name}"


def test_the_versioned_reads_have_the_contracts_parameters() -> None:
    # The optional operations are declared once, on Store; Redis implements them, the others do not.
    for name in ("fetch_view", "read_versions"):
        declared = inspect.signature(getattr(Store, name)).parameters
        assert list(inspect.signature(getattr(RedisStore, name)).parameters) == list(declared)
        assert getattr(RedisStore, name) is not getattr(Store, name)
    assert RedisStore.versioned
    assert not MemoryStore.versioned
    assert not SqliteStore.versioned
    assert not LocalCache.versioned
    with pytest.raises(NotImplementedError, match="MemoryStore is not versioned"):
        MemoryStore().fetch_view("alice", None, None, NOW)


@pytest.mark.cluster
def test_on_cluster_a_write_through_one_cache_reaches_the_other(redis_cluster: Any) -> None:
    prefix = unique_prefix()
    first = connected_cache(RedisStore.from_url(redis_cluster.url, prefix=prefix), clock=Mono())
    second = connected_cache(RedisStore.from_url(redis_cluster.url, prefix=prefix), clock=Mono())
    try:
        seed(first)
        assert not second.sync.fetch("alice", "j1", None, NOW).jti_revoked
        first.sync.revoke_token("alice", "j1", NOW + HOUR, NOW)
        # Both clocks are frozen: only the channel, across the cluster's nodes, can tell ``second``.
        wait_until(lambda: second.sync.fetch("alice", "j1", None, NOW).jti_revoked)
    finally:
        first.sync.wipe()
        first.close()
        second.close()


@pytest.mark.cluster
def test_on_cluster_users_are_held_whole_and_confirmed(redis_cluster: Any) -> None:
    mono = Mono()
    inner = RedisStore.from_url(redis_cluster.url, prefix=unique_prefix())
    cache = connected_cache(inner, clock=mono)
    try:
        seed(cache)
        cache.sync.revoke_token("alice", "j3", NOW + HOUR, NOW)
        first = cache.sync.fetch("alice", "j1", "s1", NOW)
        requests = Requests(inner)
        assert cache.sync.fetch("alice", "j3", "s1", NOW).jti_revoked
        for _ in range(10):
            mono.advance(0.3)
            assert cache.sync.fetch("alice", "j2", "s1", NOW) == first
        assert requests.sent
        assert all(name == "Together" for name in requests.names)  # confirmations: one read per key
        inner.sync.bump_user("alice", NOW, "behind", NOW + HOUR)
        mono.advance(0.6)
        after = cache.sync.fetch("alice", "j2", "s1", NOW)
        assert after.user is not None
        assert first.user is not None
        assert after.user.epoch > first.user.epoch
    finally:
        cache.sync.wipe()
        cache.close()

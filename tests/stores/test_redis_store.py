"""The Redis store beyond the contract: URLs and clients, key layout, cost of a check, atomic writes, expiry.

The contract itself (tests/stores/test_contract.py) already runs on ``redis_store`` and
``cluster_store``; this file covers what only Redis has.
"""

from __future__ import annotations

import asyncio
import fnmatch
import subprocess
import sys
import threading
import time
import uuid
from typing import Any, Optional

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from authx_epoch.errors import ConfigurationError, StoreUnavailableError
from authx_epoch.records import RotationStatus
from authx_epoch.stores import open_store
from tests.plugins.redis_servers import RedisCluster, RedisServer, unique_prefix

pytest.importorskip("redis")
import msgpack
import redis
import redis.asyncio
import redis.cluster

from authx_epoch.stores.redis import RedisStore
from authx_epoch.stores.redis.keys import digest
from authx_epoch.stores.redis.keyspace import KeySpace

NOW = 1_800_000_000.0
HOSTILE_UIDS = [
    "alice",
    "{alice}",
    "}alice{",
    "a:b",
    "a:b:c",
    "*",
    "a*",
    "a b",
    "a\nb",
    "\n",
    "ünïcødé-用户",
    "\ud800",  # a lone surrogate, as a JSON "\ud800" escape in sub decodes to
    "x" * 10_000,
    "{" * 5000 + "}" * 5000,
    "",
]


# -- URLs, options, clients -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("redis://127.0.0.1:6379/0", "redis"),
        ("rediss://user:secret@redis.example:6380/1", "redis"),
        ("unix:///var/run/redis/redis.sock?db=2", "redis"),
        ("redis+cluster://10.0.0.1:7000,10.0.0.2:7001,[::1]:7002", "redis+cluster"),
        ("rediss+cluster://user:secret@10.0.0.1:7000", "redis+cluster"),
    ],
)
def test_open_store_understands_every_redis_scheme_without_connecting(url: str, kind: str) -> None:
    store = open_store(url)
    assert isinstance(store, RedisStore)
    assert store.kind == kind == store.sync.kind == store.aio.kind
    assert store.prefix == "authx-epoch"
    store.close()


def test_options_come_from_the_query_and_keywords_win() -> None:
    store = RedisStore.from_url("redis://127.0.0.1:1/0?prefix=app1&socket_timeout=0.5&socket_connect_timeout=0.1")
    assert store.prefix == "app1"
    client = store.blocking_client()
    assert client.connection_pool.connection_kwargs["socket_timeout"] == 0.5
    assert client.connection_pool.connection_kwargs["socket_connect_timeout"] == 0.1
    override = RedisStore.from_url("redis://127.0.0.1:1/0?prefix=app1", prefix="app2", socket_timeout=2)
    assert override.prefix == "app2"
    assert override.blocking_client().connection_pool.connection_kwargs["socket_timeout"] == 2.0


def test_timeouts_default_to_a_quarter_second() -> None:
    kwargs = RedisStore.from_url("redis://127.0.0.1:1/0").blocking_client().connection_pool.connection_kwargs
    assert kwargs["socket_timeout"] == kwargs["socket_connect_timeout"] == 0.25


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:6379/0?socket_timeout=abc",
        "redis://127.0.0.1:6379/0?socket_timeout=0",
        "redis://127.0.0.1:6379/0?socket_connect_timeout=-1",
        "redis://127.0.0.1:6379/0?prefix={tenant}",
        "redis://127.0.0.1:6379/0?prefix=",
        "redis://127.0.0.1:6379/0?no_such_option=1",
        "redis+cluster://10.0.0.1",
        "redis+cluster://10.0.0.1:notaport",
        "redis+cluster://10.0.0.1:7000/3",
        "redis+cluster://10.0.0.1:7000?db=1",
    ],
)
def test_bad_urls_are_configuration_errors(url: str) -> None:
    with pytest.raises(ConfigurationError):
        open_store(url)


def test_errors_never_show_the_password() -> None:
    with pytest.raises(ConfigurationError) as caught:
        open_store("redis+cluster://user:hunter2@10.0.0.1:notaport")
    assert "hunter2" not in str(caught.value)
    with pytest.raises(ConfigurationError) as caught:
        open_store("redis://user:hunter2@127.0.0.1:6379/0?no_such_option=1")
    assert "hunter2" not in str(caught.value)


def test_without_the_redis_package_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [name for name in sys.modules if name == "redis" or name.startswith("redis.")]:
        monkeypatch.delitem(sys.modules, name)
    for name in [name for name in sys.modules if name.startswith("authx_epoch.stores.redis")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "redis", None)
    with pytest.raises(ConfigurationError, match=r"authx-epoch\[redis\]"):
        open_store("redis://127.0.0.1:6379/0")


def test_the_package_imports_without_redis() -> None:
    code = (
        "import sys; sys.modules['redis'] = None; import authx_epoch, authx_epoch.stores; "
        "authx_epoch.open_store('memory://'); assert 'authx_epoch.stores.redis' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_client_objects_are_validated() -> None:
    with pytest.raises(ConfigurationError, match="needs a client"):
        RedisStore()
    with pytest.raises(ConfigurationError, match=r"redis\.asyncio"):
        RedisStore(client=redis.Redis())  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="decode_responses"):
        RedisStore(client=redis.asyncio.Redis(decode_responses=True))


@pytest.mark.redis
@pytest.mark.anyio
async def test_user_built_clients_are_used_and_not_closed(redis_url: str) -> None:
    sync_client = redis.Redis.from_url(redis_url)
    async_client = redis.asyncio.Redis.from_url(redis_url)
    store = RedisStore(client=async_client, sync_client=sync_client, prefix=unique_prefix())
    try:
        stamps = store.sync.issue("alice", NOW, NOW + 900)
        state = await store.aio.fetch("alice", None, None, NOW)
        assert state.user is not None
        assert state.user.epoch == stamps.user_epoch
        store.close()
        await store.aio.close()
        assert sync_client.ping()
        assert await async_client.ping()
    finally:
        store.sync.wipe()
        sync_client.close()
        await async_client.aclose()


@pytest.mark.redis
@pytest.mark.anyio
async def test_given_only_an_async_client_the_sync_side_is_derived(redis_url: str) -> None:
    client = redis.asyncio.Redis.from_url(redis_url)
    store = RedisStore(client=client, prefix=unique_prefix())
    try:
        record = store.sync.bump_user("alice", NOW, "derived", NOW + 900)
        assert (await store.aio.get_user("alice", NOW)) == record
        sync_client = store.blocking_client()
        assert sync_client.connection_pool.connection_kwargs["port"] == client.connection_pool.connection_kwargs["port"]
    finally:
        store.sync.wipe()
        store.close()
        await client.aclose()


def test_an_underivable_side_fails_clearly_when_used() -> None:
    cluster_client = redis.asyncio.cluster.RedisCluster(host="127.0.0.1", port=1)
    store = RedisStore(client=cluster_client)
    assert store.kind == "redis+cluster"
    with pytest.raises(ConfigurationError, match="sync_client"):
        store.sync.setup(NOW)


# -- key layout -------------------------------------------------------------------------------


def test_hostile_uids_get_distinct_fixed_length_keys_in_their_own_slot() -> None:
    keys = KeySpace("app")
    user_keys = {keys.user_key(uid) for uid in HOSTILE_UIDS}
    assert len(user_keys) == len(HOSTILE_UIDS)
    for uid in HOSTILE_UIDS:
        user_key = keys.user_key(uid)
        assert len(user_key) == len(b"app:{}:h") + 43
        assert keys.kind_of(user_key) == "user"
        # A revoked jti is a field of its owner's hash: fixed length too, whatever the jti holds.
        assert len(keys.token_field(uid)) == len(b"j:") + 43
    assert keys.kind_of(keys.session_key("\n{*}")) == "session"
    # Keys of the layout before the user hash are not read as anything (their users log in again).
    assert keys.kind_of(keys.user_key("alice")[:-1] + b"u") is None
    assert keys.kind_of(keys.global_key) == "global"
    assert keys.kind_of(b"app:unrelated") is None
    assert keys.kind_of(b"other:g") is None


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=64), st.text(max_size=64))
def test_distinct_uids_never_share_a_key_and_their_hash_tag_holds(first: str, second: str) -> None:
    keys = KeySpace()
    if first != second:
        assert keys.user_key(first) != keys.user_key(second)
        assert keys.token_field(first) != keys.token_field(second)
    key = keys.user_key(first)
    tag = key[key.index(b"{") + 1 : key.index(b"}")]
    assert tag == digest(first)
    assert redis.cluster.key_slot(key) == redis.cluster.key_slot(b"{" + digest(first) + b"}")


def test_a_prefix_with_glob_characters_scans_only_its_own_keys() -> None:
    keys = KeySpace("a*[b]?")
    assert keys.pattern == rb"a\*\[b\]\?:*"


# -- hostile uids on real servers ---------------------------------------------------------------


def _hostile_uids_stay_apart(store: Any) -> None:
    sync = store.sync
    sync.setup(NOW)
    stamps = {uid: sync.issue(uid, NOW, NOW + 900) for uid in HOSTILE_UIDS}
    victim = "{alice}"
    sync.bump_user(victim, NOW + 1, "hostile", NOW + 3600)
    sync.revoke_token(victim, "shared-jti", NOW + 900, NOW)
    for uid in HOSTILE_UIDS:
        state = sync.fetch(uid, "shared-jti", None, NOW + 2)
        assert state.user is not None
        if uid == victim:
            assert state.user.epoch > stamps[uid].user_epoch
            assert state.jti_revoked
        else:
            assert state.user.epoch == stamps[uid].user_epoch, uid[:20]
            assert not state.jti_revoked
    exported = {(entry.kind, entry.key) for entry in sync.export_entries(NOW + 2)}
    assert {("user", uid) for uid in HOSTILE_UIDS} <= exported
    assert ("token", "shared-jti") in exported
    assert sync.stats(NOW + 2).users == len(HOSTILE_UIDS)


@pytest.mark.redis
def test_hostile_uids_on_a_single_redis(redis_store: Any) -> None:
    _hostile_uids_stay_apart(redis_store)


@pytest.mark.cluster
def test_hostile_uids_on_the_cluster(cluster_store: Any) -> None:
    _hostile_uids_stay_apart(cluster_store)


# -- what a check costs -----------------------------------------------------------------------


def _commands(clients: list[Any]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for client in clients:
        for name, stat in client.info("commandstats").items():
            command = name.removeprefix("cmdstat_")
            if command not in ("info", "config|resetstat"):
                counts[command] = counts.get(command, 0) + stat["calls"]
    return counts


def _reset(clients: list[Any]) -> None:
    for client in clients:
        client.config_resetstat()


@pytest.mark.redis
@pytest.mark.anyio
@pytest.mark.parametrize(("jti", "session_id", "reads"), [("jti", "sid", 2), ("jti", None, 1), (None, "sid", 2)])
async def test_one_check_is_one_command_on_a_single_redis(
    private_redis: RedisServer, jti: str | None, session_id: str | None, reads: int
) -> None:
    store = RedisStore.from_url(private_redis.url)
    admin = private_redis.client()
    try:
        store.sync.setup(NOW)
        store.sync.issue("alice", NOW, NOW + 900, "sid")
        store.sync.revoke_token("alice", "jti", NOW + 900, NOW)
        await store.aio.fetch("alice", jti, session_id, NOW)  # connect (HELLO/CLIENT SETINFO) before counting
        store.sync.fetch("alice", jti, session_id, NOW)  # and load the script (the aio check may need none)
        for side in ("aio", "sync"):
            _reset([admin])
            if side == "aio":
                state = await store.aio.fetch("alice", jti, session_id, NOW)
            else:
                state = store.sync.fetch("alice", jti, session_id, NOW)
            assert state.user is not None
            assert state.jti_revoked == (jti is not None)
            assert (state.session is not None) == (session_id is not None)
            if side == "aio" and session_id is None:
                # The check connection tracks the global record: the check is one HMGET.
                assert _commands([admin]) == {"hmget": 1}
                continue
            # One command from the client: a read-only script. Redis also counts the reads the
            # script makes inside the server (one HMGET of the user's hash, GETs of the global
            # and session records); they cost no round trip.
            assert _commands([admin]) == {"evalsha_ro": 1, "hmget": 1, "get": reads}, side
    finally:
        admin.close()
        store.close()


@pytest.mark.cluster
@pytest.mark.anyio
async def test_a_check_on_the_cluster_is_one_command_per_key(redis_cluster: RedisCluster) -> None:
    store = RedisStore.from_url(redis_cluster.url, prefix=unique_prefix())
    admins = [server.client() for server in redis_cluster.servers]
    try:
        store.sync.setup(NOW)
        store.sync.issue("alice", NOW, NOW + 900, "sid")
        store.sync.revoke_token("alice", "jti", NOW + 900, NOW)
        await store.aio.fetch("alice", "jti", "sid", NOW)
        store.sync.fetch("alice", "jti", "sid", NOW)
        # The user's hash (record and revoked jti), the global record, the session record.
        for session_id, expected in (("sid", {"hmget": 1, "get": 2}), (None, {"hmget": 1, "get": 1})):
            for side in ("aio", "sync"):
                _reset(admins)
                if side == "aio":
                    state = await store.aio.fetch("alice", "jti", session_id, NOW)
                else:
                    state = store.sync.fetch("alice", "jti", session_id, NOW)
                assert state.user is not None
                assert state.jti_revoked
                assert _commands(admins) == expected, side
    finally:
        for admin in admins:
            admin.close()
        store.sync.wipe()
        store.close()


# -- atomic writes ----------------------------------------------------------------------------


def _bump_many_concurrently(fixture_store: Any, url: str) -> None:
    """Async tasks, threads and processes bump one user at the same clock value: none may be lost."""
    from authx_epoch.stores.redis import RedisStore

    # Atomicity is under test, not timeouts: generous ones keep a loaded CI machine from turning
    # a slow reply into a failed bump.
    store = RedisStore.from_url(url, prefix=fixture_store.prefix, socket_timeout=10, socket_connect_timeout=10)
    try:
        _bump_with(store, url)
    finally:
        store.close()


def _bump_with(store: Any, url: str) -> None:
    start = store.sync.bump_user("hot", NOW, None, NOW + 3600).epoch

    async def tasks() -> list[int]:
        results = await asyncio.gather(*(store.aio.bump_user("hot", NOW, None, NOW + 3600) for _ in range(60)))
        return [record.epoch for record in results]

    epochs: list[int] = asyncio.run(tasks())
    lock = threading.Lock()

    def worker() -> None:
        mine = [store.sync.bump_user("hot", NOW, None, NOW + 3600).epoch for _ in range(20)]
        with lock:
            epochs.extend(mine)

    script = (
        "import sys; from authx_epoch.stores.redis import RedisStore; "
        "s = RedisStore.from_url(sys.argv[1], prefix=sys.argv[2], socket_timeout=10, socket_connect_timeout=10); "
        f"print(' '.join(str(s.sync.bump_user('hot', {NOW!r}, None, {NOW + 3600!r}).epoch) for _ in range(20)))"
    )
    processes = [
        subprocess.Popen([sys.executable, "-c", script, url, store.prefix], stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    threads = [threading.Thread(target=worker) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for process in processes:
        out, _ = process.communicate(timeout=60)
        assert process.returncode == 0
        epochs.extend(int(value) for value in out.split())
    total = 60 + 3 * 20 + 2 * 20
    # Every bump saw a different epoch (a lost increment would show as two equal ones); each
    # moved past the start; the record holds at least all of them. On a healthy loopback this
    # is exactly start+1..start+total (a retried bump after a dropped connection may add one).
    assert len(epochs) == len(set(epochs)) == total
    final = store.sync.get_user("hot", NOW).epoch
    assert start < min(epochs)
    assert final >= max(epochs)
    assert final >= start + total


@pytest.mark.redis
def test_concurrent_bumps_lose_no_increment_on_a_single_redis(redis_store: Any, redis_url: str) -> None:
    _bump_many_concurrently(redis_store, redis_url)


@pytest.mark.cluster
def test_concurrent_bumps_lose_no_increment_on_the_cluster(cluster_store: Any, redis_cluster: RedisCluster) -> None:
    _bump_many_concurrently(cluster_store, redis_cluster.url)


@pytest.mark.redis
def test_epochs_past_two_to_the_53_stay_exact(redis_store: Any) -> None:
    from authx_epoch.records import EpochRecord, SnapshotEntry

    huge = 2**62 + 1
    record = EpochRecord(epoch=huge, created_at=NOW, expires_at=NOW + 900)
    redis_store.sync.import_entries([SnapshotEntry("user", "alice", record=record)], NOW)
    assert redis_store.sync.bump_user("alice", NOW, None, NOW + 900).epoch == huge + 1
    assert redis_store.sync.bump_user("alice", NOW, None, NOW + 900).epoch == huge + 2


# -- expiry in Redis itself -------------------------------------------------------------------


@pytest.mark.redis
def test_redis_drops_what_has_expired_on_its_own(redis_store: Any, redis_url: str) -> None:
    now = time.time()
    sync, keys = redis_store.sync, redis_store._keys
    admin = redis.Redis.from_url(redis_url)
    try:
        sync.setup(now)
        sync.issue("alice", now, now + 900)
        sync.revoke_token("alice", "j1", now + 600, now)
        sync.revoke_session("s1", now + 300, now)
        assert admin.ttl(keys.global_key) == -1
        user_ttl = admin.pttl(keys.user_key("alice")) / 1000
        assert 900 < user_ttl <= 900 + 3600
        assert admin.type(keys.user_key("alice")) == b"hash"
        assert 299 < admin.pttl(keys.session_key("s1")) / 1000 <= 300
        # A revoked jti outliving the user's record keeps the user's hash alive until it expires.
        sync.revoke_token("alice", "j1", now + 9 * 3600, now)
        assert 9 * 3600 - 1 < admin.pttl(keys.user_key("alice")) / 1000 <= 9 * 3600
        # Never shortened: a shorter revocation or a shorter-lived token leaves the expiry alone.
        sync.revoke_token("alice", "j1", now + 10, now)
        assert admin.pttl(keys.user_key("alice")) / 1000 > 9 * 3600 - 1
        sync.issue("alice", now, now + 10)
        assert admin.pttl(keys.user_key("alice")) / 1000 > 900
        sync.bump_user("alice", now, None, now + 60)
        assert admin.pttl(keys.user_key("alice")) / 1000 > 900
        # An entry expiring within the millisecond is gone when Redis is asked.
        sync.revoke_session("s2", now + 0.001, now)
        deadline = time.monotonic() + 2
        while admin.exists(keys.session_key("s2")) and time.monotonic() < deadline:
            time.sleep(0.005)  # Redis' own clock has to pass the expiry: nothing to inject here
        assert not admin.exists(keys.session_key("s2"))
    finally:
        admin.close()


@pytest.mark.redis
def test_expired_jti_fields_are_swept_by_later_writes(redis_store: Any, redis_url: str) -> None:
    sync, keys = redis_store.sync, redis_store._keys
    admin = redis.Redis.from_url(redis_url)
    try:
        sync.issue("alice", NOW, NOW + 900)
        for index in range(40):
            sync.revoke_token("alice", f"old-{index}", NOW + 60, NOW)
        sync.revoke_token("alice", "long", NOW + 9000, NOW)
        fields = admin.hkeys(keys.user_key("alice"))
        assert sum(field.startswith(b"j:") for field in fields) == 41
        later = NOW + 120
        assert not sync.fetch("alice", "old-0", None, later).jti_revoked  # ignored once expired
        assert sync.stats(later).revoked_tokens == 1
        sync.revoke_token("alice", "new", later + 900, later)  # any write to the hash sweeps
        fields = admin.hkeys(keys.user_key("alice"))
        assert sorted(field for field in fields if field.startswith(b"j:")) == sorted(
            [keys.token_field("long"), keys.token_field("new")]
        )
        assert sync.fetch("alice", "long", None, later).jti_revoked
        assert sync.get_user("alice", later) is not None
    finally:
        admin.close()


@pytest.mark.redis
def test_lost_scripts_are_reloaded(redis_store: Any, redis_url: str) -> None:
    admin = redis.Redis.from_url(redis_url)
    try:
        redis_store.sync.bump_user("alice", NOW, None, NOW + 900)
        admin.script_flush()
        assert redis_store.sync.bump_user("alice", NOW, None, NOW + 900).bumped_at == NOW
    finally:
        admin.close()


@pytest.mark.redis
def test_prefixes_keep_apps_apart_and_wipe_touches_only_its_own(redis_url: str) -> None:
    first = RedisStore.from_url(redis_url, prefix=unique_prefix())
    second = RedisStore.from_url(redis_url, prefix=unique_prefix())
    admin = redis.Redis.from_url(redis_url)
    bystander = f"{unique_prefix()}-bystander"
    try:
        admin.set(bystander, b"keep me", ex=60)
        first.sync.bump_user("alice", NOW, "first", NOW + 900)
        assert second.sync.get_user("alice", NOW) is None
        second.sync.bump_user("alice", NOW, "second", NOW + 900)
        first.sync.wipe()
        assert first.sync.get_user("alice", NOW) is None
        assert second.sync.get_user("alice", NOW).reason == "second"
        assert admin.get(bystander) == b"keep me"
    finally:
        admin.delete(bystander)
        second.sync.wipe()
        first.close()
        second.close()
        admin.close()


# -- namespaces -------------------------------------------------------------------------------


def test_namespace_keys_live_under_their_own_prefix_and_the_root_keys_are_unchanged() -> None:
    root, admin = KeySpace("app"), KeySpace("app", namespace="admin")
    # The root's layout is exactly the one written before namespaces existed.
    assert root.global_key == b"app:g"
    assert root.user_key("alice") == b"app:{" + digest("alice") + b"}:h"
    assert root.session_key("s") == b"app:s:" + digest("s")
    assert root.pattern == b"app:*"
    assert admin.global_key == b"app~admin:g"
    assert admin.user_key("alice") == b"app~admin:{" + digest("alice") + b"}:h"
    assert admin.session_key("s") == b"app~admin:s:" + digest("s")
    assert admin.pattern == b"app~admin:*"
    for key in (admin.global_key, admin.user_key("alice"), admin.session_key("s")):
        assert root.kind_of(key) is None
        assert not fnmatch.fnmatchcase(key.decode(), root.pattern.decode())
        assert not fnmatch.fnmatchcase(key.decode(), KeySpace("app", namespace="admins").pattern.decode())
    # The user's hash tag still holds: a user's keys share one Cluster slot in every namespace.
    assert redis.cluster.key_slot(admin.user_key("alice")) == redis.cluster.key_slot(root.user_key("alice"))
    assert admin.with_namespace("").global_key == root.global_key


@pytest.mark.parametrize("prefix", ["app~admin", "~", "a~"])
def test_a_prefix_may_not_hold_the_namespace_separator(prefix: str) -> None:
    with pytest.raises(ConfigurationError, match="'~'"):
        KeySpace(prefix)
    with pytest.raises(ConfigurationError, match="'~'"):
        RedisStore.from_url("redis://127.0.0.1:1/0", prefix=prefix)


@pytest.mark.parametrize(
    ("url", "location"),
    [
        ("redis://127.0.0.1:6379/0?prefix=app", "redis://127.0.0.1:6379/0?prefix=app"),
        ("redis://user:secret@127.0.0.1:6380?prefix=a:b", "redis://127.0.0.1:6380/0?prefix=a:b"),
        ("rediss://:secret@redis.example:6380/3", "redis://redis.example:6380/3?prefix=authx-epoch"),
        ("redis://[::1]:6379/1", "redis://[::1]:6379/1?prefix=authx-epoch"),
        ("unix:///run/redis.sock?db=2&prefix=app", "unix:///run/redis.sock?db=2&prefix=app"),
        (
            "redis+cluster://u:secret@10.0.0.2:7001,10.0.0.1:7000?prefix=app",
            "redis+cluster://10.0.0.1:7000,10.0.0.2:7001?prefix=app",
        ),
    ],
)
def test_the_location_names_the_data_without_secrets(url: str, location: str) -> None:
    store = RedisStore.from_url(url)
    assert store.location == location
    assert "secret" not in store.location
    view = store.with_namespace("admin")
    assert (view.location, view.namespace) == (location, "admin")
    assert RedisStore.from_url(url, namespace="admin").location == location
    store.close()


@pytest.mark.redis
@pytest.mark.anyio
async def test_a_store_built_from_clients_has_the_same_location(redis_url: str) -> None:
    sync_client = redis.Redis.from_url(redis_url)
    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        by_url = RedisStore.from_url(redis_url, prefix="app")
        assert RedisStore(client, sync_client=sync_client, prefix="app").location == by_url.location
        assert RedisStore(client, prefix="app").location == by_url.location
        by_url.close()
    finally:
        sync_client.close()
        await client.aclose()


def _namespaced_keys_stay_apart(store: Any) -> None:
    root, admin = store, store.with_namespace("admin")
    keys = KeySpace(store.prefix, cluster=store.kind == "redis+cluster")
    raw_client = store.blocking_client()  # the store's own client: a Cluster one scans every node
    try:
        for each in (root, admin):
            each.sync.setup(NOW)
            each.sync.issue("alice", NOW, NOW + 900, "s1")
            each.sync.revoke_token("alice", "j1", NOW + 900, NOW)
        root_keys = sorted(raw_client.scan_iter(match=keys.pattern, count=500))
        admin_keys = sorted(raw_client.scan_iter(match=keys.with_namespace("admin").pattern, count=500))
        assert root_keys == sorted([keys.global_key, keys.user_key("alice"), keys.session_key("s1")])
        prefix = store.prefix.encode()
        assert admin_keys == sorted(prefix + b"~admin" + key[len(prefix) :] for key in root_keys)
        assert root.sync.stats(NOW).users == admin.sync.stats(NOW).users == 1
        admin.sync.wipe()
        assert sorted(raw_client.scan_iter(match=keys.pattern, count=500)) == root_keys
        assert list(raw_client.scan_iter(match=keys.with_namespace("admin").pattern, count=500)) == []
    finally:
        admin.sync.wipe()


@pytest.mark.redis
def test_namespaces_on_a_single_redis_keep_their_keys_apart(redis_store: Any) -> None:
    _namespaced_keys_stay_apart(redis_store)


@pytest.mark.cluster
def test_namespaces_on_the_cluster_keep_their_keys_apart(cluster_store: Any) -> None:
    _namespaced_keys_stay_apart(cluster_store)


@pytest.mark.redis
def test_a_view_shares_the_clients_and_closes_none(redis_store: Any) -> None:
    view = redis_store.with_namespace("admin")
    view.sync.issue("alice", NOW, NOW + 900)
    assert view.blocking_client() is redis_store.blocking_client()
    view.close()
    assert redis_store._sync_client.client is not None
    assert redis_store.sync.get_user("alice", NOW) is None
    assert view.sync.get_user("alice", NOW) is not None
    view.sync.wipe()


@pytest.mark.redis
def test_session_values_written_before_grace_used_read_as_unused(redis_store: Any, redis_url: str) -> None:
    keys = redis_store._keys
    admin = redis.Redis.from_url(redis_url)
    try:
        # A session rotated once, written with nine elements (before grace_used existed).
        nine = msgpack.packb(["7000000", "5000000", NOW, NOW + 900, "alice", NOW + 1, "5000000", False, "s1"])
        admin.set(keys.session_key("s1"), nine, px=900_000)
        record = redis_store.sync.get_session("s1", NOW + 2)
        assert record is not None
        assert (record.generation, record.previous, record.grace_used) == (7_000_000, 5_000_000, False)
        outcome = redis_store.sync.rotate_session("s1", "alice", 5_000_000, NOW + 2, 5.0, NOW + 900)
        assert outcome.status is RotationStatus.GRACE
        assert redis_store.sync.rotate_session("s1", "alice", 5_000_000, NOW + 3, 5.0, NOW + 900).status is (
            RotationStatus.REUSED
        )
        assert len(msgpack.unpackb(admin.get(keys.session_key("s1")))) == 10
    finally:
        admin.close()


def _exported(store: Any, now: float) -> set[tuple[str, str, Optional[str]]]:
    """What ``export`` gives back: (kind, key, owner) of each entry."""
    return {(entry.kind, entry.key, entry.uid) for entry in store.sync.export_entries(now)}


@pytest.mark.redis
@pytest.mark.parametrize("uid", ["42", str(uuid.UUID(int=7)), "someone.with.a.long.name@example-company.com"])
def test_a_user_hash_keeps_the_compact_encoding_whatever_the_id(redis_store: Any, redis_url: str, uid: str) -> None:
    # Every value of a hash must stay within hash-max-listpack-value (64 B) for Redis to keep it
    # compact: the ids live in field 'u', once, not in the record nor in each revoked jti.
    admin = redis.Redis.from_url(redis_url)
    try:
        jti = str(uuid.UUID(int=9))
        redis_store.sync.issue(uid, NOW, NOW + 900)
        redis_store.sync.revoke_token(uid, jti, NOW + 900, NOW)
        redis_store.sync.bump_user(uid, NOW, "password changed by the user", NOW + 900)
        key = redis_store._keys.user_key(uid)
        assert admin.object("encoding", key) == b"listpack"
        assert admin.hget(key, "u") == uid.encode()
        entries = _exported(redis_store, NOW)
        assert ("user", uid, None) in entries
        assert ("token", jti, uid) in entries
    finally:
        admin.close()


@pytest.mark.redis
def test_a_user_hash_written_by_0_1_reads_the_same_and_moves_to_the_new_layout(
    redis_store: Any, redis_url: str
) -> None:
    # 0.1 kept the id inside the record (its sixth element) and inside each revoked jti's value.
    keys = redis_store._keys
    admin = redis.Redis.from_url(redis_url)
    try:
        redis_store.sync.setup(NOW)
        key = keys.user_key("alice")
        record = msgpack.packb(["1700000000000001", NOW, NOW, "leak", NOW + 900, "alice"])
        revoked = msgpack.packb([NOW + 900, "j-1", "alice"])
        admin.hset(key, mapping={"r": record, keys.token_field("j-1"): revoked})
        admin.pexpire(key, 900_000)
        user = redis_store.sync.get_user("alice", NOW)
        assert user is not None
        assert (user.epoch, user.reason) == (1_700_000_000_000_001, "leak")
        state = redis_store.sync.fetch("alice", "j-1", None, NOW)
        assert state.jti_revoked
        before = _exported(redis_store, NOW)
        assert {("user", "alice", None), ("token", "j-1", "alice")} <= before
        # The next write that extends the record rewrites it without the id and names the user in 'u'.
        redis_store.sync.issue("alice", NOW + 1, NOW + 2000)
        assert admin.hget(key, "u") == b"alice"
        assert msgpack.unpackb(admin.hget(key, "r"))[5] is False  # what Lua writes for an absent field
        after = _exported(redis_store, NOW + 1)
        assert after == before
        assert redis_store.sync.get_user("alice", NOW + 1).epoch == 1_700_000_000_000_001  # type: ignore[union-attr]
    finally:
        admin.close()


@pytest.mark.redis
def test_an_unreadable_id_field_costs_export_that_user_and_nothing_else(redis_store: Any, redis_url: str) -> None:
    admin = redis.Redis.from_url(redis_url)
    try:
        epoch = redis_store.sync.issue("alice", NOW, NOW + 900).user_epoch
        redis_store.sync.issue("bob", NOW, NOW + 900)
        admin.hset(redis_store._keys.user_key("alice"), "u", b"\xff\xfe")  # a hand edit gone wrong
        assert {entry.key for entry in redis_store.sync.export_entries(NOW) if entry.kind == "user"} == {"bob"}
        user = redis_store.sync.fetch("alice", None, None, NOW).user
        assert user is not None
        assert user.epoch == epoch
    finally:
        admin.close()


# -- the asyncio side across event loops --------------------------------------------------------


@pytest.mark.redis
def test_the_async_side_works_across_event_loops_and_leaks_nothing(redis_store: Any) -> None:
    import gc

    redis_store.sync.issue("alice", NOW, NOW + 900)
    for _ in range(3):
        state = asyncio.run(redis_store.aio.fetch("alice", None, None, NOW))
        assert state.user is not None
    gc.collect()  # an unclosed connection would warn here, and warnings are errors


@pytest.mark.redis
@pytest.mark.anyio
async def test_a_dead_server_is_store_unavailable_fast() -> None:
    from tests.plugins.redis_servers import free_port

    store = RedisStore.from_url(f"redis://127.0.0.1:{free_port()}/0")
    started = time.perf_counter()
    with pytest.raises(StoreUnavailableError):
        await store.aio.fetch("alice", None, None, NOW)
    with pytest.raises(StoreUnavailableError):
        store.sync.fetch("alice", None, None, NOW)
    assert time.perf_counter() - started < 2
    store.close()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.redis
def test_a_burst_beyond_the_pool_waits_for_a_connection_instead_of_failing(redis_url: str) -> None:
    """More concurrent checks than the pool holds: every one is answered, none is a 503."""
    from authx_epoch.stores.redis import POOL_SIZE, RedisStore

    prefix = f"burst-{uuid.uuid4().hex}"
    store = RedisStore.from_url(redis_url, prefix=prefix)

    async def burst() -> list[Any]:
        now = time.time()
        await store.aio.setup(now)
        await store.aio.issue("alice", now, now + 900)
        try:
            return await asyncio.gather(
                *(store.aio.fetch("alice", f"jti-{n}", None, now) for n in range(3 * POOL_SIZE))
            )
        finally:
            store.sync.wipe()

    try:
        states = asyncio.run(burst())
    finally:
        store.close()
    assert len(states) == 3 * POOL_SIZE
    assert all(state.user is not None and not state.jti_revoked for state in states)

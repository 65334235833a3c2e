"""The check's own pipelined connection (``stores/redis/pipe.py``), on real Redis servers.

Concurrent checks share a write; replies go to the right callers, even around a cancelled
one; a password and a database are honoured; every way the connection can fail ends in the
documented ``StoreUnavailableError`` or in redis-py answering, never in a wrong answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from authx_epoch.errors import StoreUnavailableError
from tests.plugins.redis_servers import RedisCluster, RedisServer, unique_prefix

pytest.importorskip("redis")
pytest.importorskip("hiredis")
import redis

from authx_epoch.stores.redis import RedisStore
from authx_epoch.stores.redis.pipe import Pipe
from authx_epoch.stores.redis.slots import NOT_ANSWERED, PipeSlot, cluster_read

pytestmark = [pytest.mark.redis, pytest.mark.anyio]

NOW = 1_800_000_000.0


def _pipe(store: RedisStore) -> Pipe:
    slot = store._async_clients.pipes.main
    assert slot is not None
    assert slot.pipe is not None
    return slot.pipe


def _calls(admin: Any, *commands: str) -> tuple[int, ...]:
    stats = admin.info("commandstats")
    return tuple(int(stats.get(f"cmdstat_{command}", {}).get("calls", 0)) for command in commands)


async def test_concurrent_checks_share_one_write_and_get_their_own_answers(private_redis: RedisServer) -> None:
    store = RedisStore.from_url(private_redis.url)
    admin = private_redis.client()
    try:
        store.sync.setup(NOW)
        epochs = {}
        for index in range(32):
            uid = f"user-{index}"
            for _ in range(index % 4):
                store.sync.bump_user(uid, NOW, None, NOW + 900)
            epochs[uid] = store.sync.issue(uid, NOW, NOW + 900).user_epoch
        await store.aio.fetch("user-0", None, None, NOW)  # open the connection
        pipe = _pipe(store)
        writes, (hmget, others) = pipe.writes, _calls(admin, "hmget", "evalsha_ro")
        states = await asyncio.gather(*(store.aio.fetch(uid, None, None, NOW) for uid in epochs))
        # The first goes out at once (nothing was in flight); the 31 made meanwhile go together.
        assert pipe.writes == writes + 2
        # Still one command per check, counted by the server: an HMGET (the global record is tracked).
        assert _calls(admin, "hmget", "evalsha_ro") == (hmget + 32, others)
        assert [state.user.epoch if state.user else None for state in states] == list(epochs.values())
    finally:
        admin.close()
        await store.aio.close()
        store.close()


async def test_a_cancelled_check_does_not_shift_the_replies_of_the_others(private_redis: RedisServer) -> None:
    store = RedisStore.from_url(private_redis.url)
    try:
        store.sync.setup(NOW)
        store.sync.issue("alice", NOW, NOW + 900)
        for _ in range(3):
            store.sync.bump_user("bob", NOW, None, NOW + 900)
        store.sync.issue("bob", NOW, NOW + 900)
        await store.aio.fetch("alice", None, None, NOW)
        first = asyncio.ensure_future(store.aio.fetch("alice", None, None, NOW))
        cancelled = asyncio.ensure_future(store.aio.fetch("bob", None, None, NOW))
        last = asyncio.ensure_future(store.aio.fetch("bob", "j", None, NOW))
        await asyncio.sleep(0)
        cancelled.cancel()
        alice, bob = await first, await last
        assert alice.user is not None
        assert bob.user is not None
        assert (alice.user.epoch, bob.user.epoch) == (
            store.sync.get_user("alice", NOW).epoch,  # type: ignore[union-attr]
            store.sync.get_user("bob", NOW).epoch,  # type: ignore[union-attr]
        )
        assert alice.user.epoch != bob.user.epoch
        with pytest.raises(asyncio.CancelledError):
            await cancelled
        # The connection is still in step: the next check reads its own answer.
        again = await store.aio.fetch("alice", None, None, NOW)
        assert again.user == alice.user
    finally:
        await store.aio.close()
        store.close()


async def test_a_password_and_a_database_are_honoured(private_redis: RedisServer) -> None:
    server = private_redis
    admin = server.client()
    admin.config_set("requirepass", "s3cret")
    admin.close()
    try:
        url = f"redis://:s3cret@127.0.0.1:{server.port}/3"
        store = RedisStore.from_url(url, prefix=unique_prefix())
        store.sync.setup(NOW)
        stamps = store.sync.issue("alice", NOW, NOW + 900)
        state = await store.aio.fetch("alice", None, None, NOW)
        assert state.user is not None
        assert state.user.epoch == stamps.user_epoch
        assert _pipe(store).calls >= 3  # AUTH, SELECT and the check went through it
        # A wrong password: no connection of either kind, so the documented store error.
        wrong = RedisStore.from_url(f"redis://:nope@127.0.0.1:{server.port}/3", prefix=store._keys.prefix)
        with pytest.raises(StoreUnavailableError) as caught:
            await wrong.aio.fetch("alice", None, None, NOW)
        assert "nope" not in str(caught.value)
        assert wrong._async_clients.pipes is not None
        assert wrong._async_clients.pipes.main.pipe is None  # type: ignore[union-attr]
        await wrong.aio.close()
        wrong.close()
        await store.aio.close()
        store.close()
    finally:
        admin = redis.Redis(port=server.port, password="s3cret")
        admin.config_set("requirepass", "")
        admin.close()


@contextlib.asynccontextmanager
async def _alice(url: str, **options: Any) -> AsyncIterator[RedisStore]:
    """A store on ``url`` where alice holds a token, its check connection open on this loop."""
    store = RedisStore.from_url(url, **options)
    try:
        store.sync.setup(NOW)
        store.sync.issue("alice", NOW, NOW + 900)
        assert (await store.aio.fetch("alice", None, None, NOW)).user is not None
        yield store
    finally:
        await store.aio.close()
        store.close()


async def _alice_is_checked(store: RedisStore) -> bool:
    return (await store.aio.fetch("alice", None, None, NOW)).user is not None


async def test_a_hung_redis_is_a_store_error_within_the_timeout_then_checks_resume(
    private_redis: RedisServer,
) -> None:
    async with _alice(private_redis.url, socket_timeout=0.3) as store:
        try:
            private_redis.pause()
            loop = asyncio.get_running_loop()
            started = loop.time()
            results = await asyncio.gather(
                *(store.aio.fetch("alice", None, None, NOW) for _ in range(4)), return_exceptions=True
            )
            assert all(isinstance(result, StoreUnavailableError) for result in results), results
            assert loop.time() - started < 2.0
        finally:
            private_redis.resume()
        assert await _alice_is_checked(store)


async def test_a_killed_connection_or_a_restart_costs_no_check(private_redis: RedisServer) -> None:
    admin = private_redis.client()
    try:
        async with _alice(private_redis.url) as store:
            first = _pipe(store)
            admin.client_kill_filter(_type="normal", skipme=True)
            assert await _alice_is_checked(store)
            # The server forgets its scripts (SCRIPT FLUSH, a restart): the check still answers.
            admin.script_flush()
            assert await _alice_is_checked(store)
            # Later checks go through a new connection again.
            assert await _alice_is_checked(store)
            assert _pipe(store) is not first
    finally:
        admin.close()


async def test_redis_down_is_a_store_error_and_the_connection_comes_back(private_redis: RedisServer) -> None:
    async with _alice(private_redis.url) as store:
        private_redis.stop()
        with pytest.raises(StoreUnavailableError):
            await store.aio.fetch("alice", None, None, NOW)
        private_redis.start()
        store.sync.setup(NOW)
        store.sync.issue("alice", NOW, NOW + 900)
        # redis-py answers until the check connection may be tried again; never a wrong answer.
        assert await _alice_is_checked(store)


async def test_a_unix_socket_is_served_by_the_check_connection(tmp_path: Path) -> None:
    # A short directory of its own: a socket path must fit in 107 bytes, and tmp_path may not.
    directory = Path(tempfile.mkdtemp(prefix="ae-sock-"))
    socket_path = directory / "redis.sock"
    server = RedisServer(tmp_path / "redis", "--unixsocket", str(socket_path), "--unixsocketperm", "700").start()
    admin = server.client()
    try:
        async with _alice(f"unix://{socket_path}?db=2", prefix=unique_prefix()) as store:
            pipe = _pipe(store)
            (before,) = _calls(admin, "hmget")
            epoch = store.sync.bump_user("alice", NOW, None, NOW + 900).epoch
            state = await store.aio.fetch("alice", None, None, NOW)
            assert state.user is not None
            assert state.user.epoch == epoch  # the bump is seen, in db 2
            assert _calls(admin, "hmget") == (before + 1,)
            assert _pipe(store) is pipe
            assert pipe.calls >= 3  # SELECT and both checks went through it
            assert admin.info("keyspace").keys() == {"db2"}
    finally:
        admin.close()
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


# -- the tracked global record ----------------------------------------------------------------


def _global_epoch(state: Any) -> str:
    assert state.global_ is not None
    return str(state.global_.epoch)


async def test_a_global_bump_is_seen_by_the_next_check_while_the_global_record_is_tracked(
    private_redis: RedisServer,
) -> None:
    admin = private_redis.client()
    try:
        async with _alice(private_redis.url) as store:
            pipe = _pipe(store)
            assert pipe.tracking
            assert pipe.resp3
            key = store._keys.global_key
            assert key in pipe.tracked
            (gets,) = _calls(admin, "get")
            for _ in range(5):
                await store.aio.fetch("alice", None, None, NOW)
            assert _calls(admin, "get") == (gets,)  # held, not read again
            for round_ in range(50):
                # Another connection bumps (the blocking client, as another process would); the
                # very next check must see it, though this connection was sent nothing meanwhile.
                bumped = store.sync.bump_global(NOW, f"round {round_}")
                state = await store.aio.fetch("alice", None, None, NOW)
                assert _global_epoch(state) == str(bumped.epoch), round_
                assert await _alice_is_checked(store)
            assert _pipe(store) is pipe  # all of it on the one connection
    finally:
        admin.close()


async def test_a_bump_between_the_check_and_its_answer_is_read_again_not_missed(private_redis: RedisServer) -> None:
    admin = private_redis.client()
    try:
        async with _alice(private_redis.url) as store:
            pipe = _pipe(store)
            before = store.sync.get_global(NOW)
            (hmgets,) = _calls(admin, "hmget")
            check = asyncio.ensure_future(store.aio.fetch("alice", None, None, NOW))
            await asyncio.sleep(0)  # the check's HMGET is written; its reply is not read yet
            while _calls(admin, "hmget") == (hmgets,):  # Redis has answered it
                pass
            bumped = store.sync.bump_global(NOW, "after the read")
            # The reply and the invalidation wait in the socket, in that order; the check, not
            # knowing which came first, reads the global record again.
            state = await check
            assert before is not None
            assert bumped.epoch != before.epoch
            assert _global_epoch(state) == str(bumped.epoch)
            assert store._keys.global_key not in pipe.tracked  # tracked again by the next check
            assert _global_epoch(await store.aio.fetch("alice", None, None, NOW)) == str(bumped.epoch)
            assert store._keys.global_key in pipe.tracked
    finally:
        admin.close()


async def test_a_copy_replaced_while_a_check_waits_on_it_is_not_trusted_by_that_check(
    private_redis: RedisServer,
) -> None:
    # The race: a bump's invalidation is already in the socket, unread; check A sends its HMGET
    # trusting copy E0; E0's life ends and check B tracks the key anew (E1); then the push is
    # read, and it names the key, whose entry is now E1. A must not answer from E0.
    async with _alice(private_redis.url) as store:
        pipe = _pipe(store)
        key = store._keys.global_key
        bumped = store.sync.bump_global(NOW, "its push not read yet")

        async def end_the_copy_s_life() -> None:
            pipe.tracked[key].until = 0.0  # as if TRACKED_FOR had passed between the two checks

        # Tasks run in the order made, all in one turn of the loop, before it reads the socket.
        first = asyncio.ensure_future(store.aio.fetch("alice", None, None, NOW))
        ended = asyncio.ensure_future(end_the_copy_s_life())
        second = asyncio.ensure_future(store.aio.fetch("alice", None, None, NOW))
        states = await asyncio.gather(first, second)
        await ended
        assert [_global_epoch(state) for state in states] == [str(bumped.epoch)] * 2


async def test_a_flush_or_a_lost_connection_drops_the_tracked_copy(private_redis: RedisServer) -> None:
    admin = private_redis.client()
    try:
        async with _alice(private_redis.url) as store:
            pipe = _pipe(store)
            entry = pipe.tracked[store._keys.global_key]
            admin.flushdb()  # Redis pushes an invalidation of every key
            assert (await store.aio.fetch("alice", None, None, NOW)).global_ is None
            assert entry.stale
            store.sync.setup(NOW)
            assert (await store.aio.fetch("alice", None, None, NOW)).global_ is not None
            entry = pipe.tracked[store._keys.global_key]
            admin.client_kill_filter(_type="normal", skipme=True)
            bumped = store.sync.bump_global(NOW, "while the connection was down")
            assert _global_epoch(await store.aio.fetch("alice", None, None, NOW)) == str(bumped.epoch)
            assert entry.stale
            assert _pipe(store) is not pipe
            assert _pipe(store).tracking
    finally:
        admin.close()


async def test_each_namespace_tracks_its_own_global_record(private_redis: RedisServer) -> None:
    async with _alice(private_redis.url) as store:
        other = store.with_namespace("tenant-b")
        other.sync.setup(NOW)
        other.sync.issue("alice", NOW, NOW + 900)
        first = await other.aio.fetch("alice", None, None, NOW)
        pipe = _pipe(store)
        assert {store._keys.global_key, other._keys.global_key} <= set(pipe.tracked)
        bumped = store.sync.bump_global(NOW, "tenant a only")
        assert _global_epoch(await store.aio.fetch("alice", None, None, NOW)) == str(bumped.epoch)
        assert _global_epoch(await other.aio.fetch("alice", None, None, NOW)) == _global_epoch(first)


async def test_a_swapped_database_is_seen_within_the_tracked_copy_s_life(
    private_redis: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # SWAPDB sends no invalidation (Redis 7.0): the copy's bounded life is what catches it. With
    # a life of zero, every check tracks the key anew, so the first check after the swap sees it.
    from authx_epoch.stores.redis import pipe as pipe_module

    monkeypatch.setattr(pipe_module, "TRACKED_FOR", 0.0)
    admin = private_redis.client()
    prefix = unique_prefix()
    swapped_in = RedisStore.from_url(private_redis.url.removesuffix("/0") + "/1", prefix=prefix)
    try:
        async with _alice(private_redis.url, prefix=prefix) as store:
            swapped_in.sync.setup(NOW)
            bumped = swapped_in.sync.bump_global(NOW, "in the other database")
            # (The bump in db 1 invalidated the copy: Redis tracks key names, whatever the
            # database. Two checks, so that a copy of db 0's record is held when the swap comes.)
            for _ in range(2):
                before = await store.aio.fetch("alice", None, None, NOW)
            assert _global_epoch(before) != str(bumped.epoch)
            assert not _pipe(store).tracked[store._keys.global_key].stale
            admin.swapdb(0, 1)
            assert _global_epoch(await store.aio.fetch("alice", None, None, NOW)) == str(bumped.epoch)
    finally:
        swapped_in.close()
        admin.close()


@pytest.mark.parametrize(
    "refusal",
    [("--rename-command", "HELLO", ""), ("--rename-command", "CLIENT", "")],
    ids=["no RESP3 (before Redis 6)", "no CLIENT command"],
)
async def test_a_server_that_cannot_track_gets_the_check_script(tmp_path: Path, refusal: tuple[str, ...]) -> None:
    server = RedisServer(tmp_path / "redis", *refusal).start()
    admin = server.client()
    try:
        async with _alice(server.url) as store:
            pipe = _pipe(store)
            assert not pipe.tracking
            assert not pipe.resp3
            (scripts,) = _calls(admin, "evalsha_ro")
            bumped = store.sync.bump_global(NOW, "seen by the script")
            store.sync.revoke_token("alice", "j", NOW + 900, NOW)
            state = await store.aio.fetch("alice", "j", None, NOW)
            assert _global_epoch(state) == str(bumped.epoch)
            assert state.jti_revoked
            assert _calls(admin, "evalsha_ro") == (scripts + 1,)
            assert _pipe(store) is pipe
    finally:
        admin.close()
        server.stop()


@pytest.mark.parametrize(
    ("keys", "tracks"),
    [("~app:*", True), ("%RW~app:[^t]* %R~app:tracking-probe", False)],
    ids=["the store's keys", "the probe key read-only"],
)
async def test_tracking_is_trusted_only_once_seen_to_push(private_redis: RedisServer, keys: str, tracks: bool) -> None:
    # The connection writes a key of the store's own (under its prefix, which an ACL limiting the
    # store to its keys allows) and must see the invalidation come back. When it cannot (here an
    # ACL makes the probe read-only; a proxy that accepts CLIENT TRACKING and never pushes looks
    # the same), the check keeps the script, which reads the global record itself.
    admin = private_redis.client()
    admin.execute_command("ACL", "SETUSER", "app", "on", ">pw", "+@all", "resetkeys", *keys.split())
    try:
        url = f"redis://app:pw@127.0.0.1:{private_redis.port}/0"
        async with _alice(url, prefix="app") as store:
            pipe = _pipe(store)
            assert pipe.tracking is tracks
            assert pipe.resp3 is tracks
            (hmgets, scripts) = _calls(admin, "hmget", "evalsha_ro")
            bumped = store.sync.bump_global(NOW, "seen either way")
            assert _global_epoch(await store.aio.fetch("alice", None, None, NOW)) == str(bumped.epoch)
            assert _calls(admin, "evalsha_ro") == (scripts + (0 if tracks else 1),)
            assert _calls(admin, "hmget")[0] > hmgets
            assert admin.exists("app:tracking-probe") == 0  # nothing left behind
    finally:
        admin.close()


async def test_script_replies_over_resp3_read_as_over_resp2(private_redis: RedisServer) -> None:
    # A session check still runs the script, on a RESP3 connection: Lua's false must read as absent.
    async with _alice(private_redis.url) as store:
        pipe = _pipe(store)
        assert pipe.resp3
        store.sync.issue("alice", NOW, NOW + 900, "sid")
        calls = pipe.calls
        state = await store.aio.fetch("alice", "not-revoked", "sid", NOW)
        assert pipe.calls == calls + 1  # through the check connection
        assert state.user is not None
        assert state.session is not None
        assert not state.jti_revoked
        assert not state.session_revoked
        nothing = await store.aio.fetch("nobody", "j", "no-such-session", NOW)
        assert nothing.user is None
        assert nothing.session is None
        assert not nothing.jti_revoked
        store.sync.revoke_session("sid", NOW + 900, NOW, "alice")
        assert (await store.aio.fetch("alice", None, "sid", NOW)).session_revoked


def test_clients_it_does_not_speak_use_redis_py() -> None:
    from authx_epoch.stores.redis.pipe import pipe_settings

    plain = redis.asyncio.Redis.from_url("redis://127.0.0.1:6379/2")
    assert pipe_settings(plain) == {
        "cluster": False,
        "track": True,
        "host": "127.0.0.1",
        "port": 6379,
        "path": None,
        "username": None,
        "password": None,
        "db": 2,
        "socket_timeout": None,
        "socket_connect_timeout": None,
    }
    for url in ("rediss://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0?protocol=3"):
        assert pipe_settings(redis.asyncio.Redis.from_url(url)) is None, url
    assert pipe_settings(redis.asyncio.Redis.from_url("redis://127.0.0.1:6379/0", decode_responses=True)) is None


@pytest.mark.cluster
async def test_cluster_checks_read_each_node_through_its_own_connection(redis_cluster: RedisCluster) -> None:
    store = RedisStore.from_url(redis_cluster.url, prefix=unique_prefix())
    try:
        store.sync.setup(NOW)
        users = [f"user-{index}" for index in range(32)]
        expected = [store.sync.issue(uid, NOW, NOW + 900).user_epoch for uid in users]
        store.sync.revoke_token("user-3", "j", NOW + 900, NOW)
        states = await asyncio.gather(*(store.aio.fetch(uid, "j", None, NOW) for uid in users))
        assert [state.user.epoch if state.user else None for state in states] == expected
        assert [state.jti_revoked for state in states] == [uid == "user-3" for uid in users]
        pipes = store._async_clients.pipes
        assert pipes is not None
        assert pipes.main is None
        # The users' hashes spread over the three masters, and the global record is on one of them.
        assert len(pipes.nodes) == 3
        calls = sum(slot.pipe.calls for slot in pipes.nodes.values() if slot.pipe is not None)
        assert calls == 2 * 32
    finally:
        store.sync.wipe()
        await store.aio.close()
        store.close()


@pytest.mark.cluster
async def test_a_new_node_address_closes_the_connections_to_nodes_the_cluster_no_longer_has(
    redis_cluster: RedisCluster,
) -> None:
    store = RedisStore.from_url(redis_cluster.url, prefix=unique_prefix())
    try:
        store.sync.setup(NOW)
        users = [f"user-{index}" for index in range(32)]
        expected = [store.sync.issue(uid, NOW, NOW + 900).user_epoch for uid in users]
        await asyncio.gather(*(store.aio.fetch(uid, None, None, NOW) for uid in users))
        pipes = store._async_clients.pipes
        assert pipes is not None
        # A node that left the Cluster (an address the client no longer lists), its connection
        # still open; and a node the checks have not read yet, as after a resharding.
        first = next(iter(pipes.nodes))
        departed = PipeSlot({**pipes.settings, "host": first[0], "port": first[1]})
        assert await departed.get() is not None
        pipes.nodes[("127.0.0.2", 1)] = departed
        moved = next(iter(pipes.nodes))
        pipes.nodes.pop(moved).close()
        states = await asyncio.gather(*(store.aio.fetch(uid, None, None, NOW) for uid in users))
        assert [state.user.epoch if state.user else None for state in states] == expected
        assert ("127.0.0.2", 1) not in pipes.nodes
        assert departed.closed
        assert departed.pipe is not None
        assert departed.pipe.broken is not None
        assert set(pipes.nodes) == {("127.0.0.1", server.port) for server in redis_cluster.servers}
    finally:
        store.sync.wipe()
        await store.aio.close()
        store.close()


@pytest.mark.cluster
async def test_a_read_sent_to_the_wrong_node_goes_to_redis_py(redis_cluster: RedisCluster) -> None:
    store = RedisStore.from_url(redis_cluster.url, prefix=unique_prefix())
    try:
        store.sync.setup(NOW)
        await store.aio.fetch("alice", None, None, NOW)
        client = await store._async_clients.get()
        pipes = store._async_clients.pipes
        assert pipes is not None
        key = store._keys.global_key
        owner = client.get_node_from_key(key)
        assert owner is not None
        other = next(server for server in redis_cluster.servers if server.port != int(owner.port))
        # A slot map gone stale (a resharding): the node answers MOVED, and redis-py, which
        # follows redirections, reads it instead.
        wrong = pipes.node("127.0.0.1", other.port, client.get_nodes)
        assert await cluster_read(wrong, "get", (key,)) is NOT_ANSWERED
        assert await cluster_read(pipes.node(owner.host, int(owner.port), client.get_nodes), "get", (key,)) is not None
    finally:
        store.sync.wipe()
        await store.aio.close()
        store.close()


@pytest.mark.filterwarnings("ignore::ResourceWarning", "ignore::pytest.PytestUnraisableExceptionWarning")
def test_closing_the_store_after_its_event_loop_closed_raises_nothing_and_frees_the_connection(
    private_redis: RedisServer,
) -> None:
    store = RedisStore.from_url(private_redis.url)
    admin = private_redis.client()
    try:
        store.sync.setup(NOW)
        store.sync.issue("alice", NOW, NOW + 900)
        loop = asyncio.new_event_loop()
        state = loop.run_until_complete(store.aio.fetch("alice", None, None, NOW))
        assert state.user is not None
        connected = len(admin.client_list())
        # Closed without shutting down its async generators, so nothing closed the connections.
        loop.close()
        store.close()
        # The check connection is gone from the server's list (redis-py's own, left to the
        # garbage collector, may linger).
        deadline = time.monotonic() + 5
        while len(admin.client_list()) > connected - 1 and time.monotonic() < deadline:
            time.sleep(0.01)  # waiting for the server to notice, not for a clock
        assert len(admin.client_list()) <= connected - 1
    finally:
        admin.close()

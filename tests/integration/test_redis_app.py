"""A real FastAPI + AuthX app on a real Redis that the tests flush, fill, stop, freeze and restart.

Loss is never acceptance (invariant 4): after a FLUSHALL, an eviction or a restart without
persistence every stamped token is refused and a new login works. An unreachable or hung Redis
is a 503, and service comes back on its own when Redis does, with no app restart.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from authx_epoch import Reason
from authx_epoch.integrations.authx import STORE_UNAVAILABLE_MESSAGE
from tests.helpers import Harness, bearer, build_app, client
from tests.plugins.redis_servers import RedisServer

pytest.importorskip("redis")

pytestmark = [pytest.mark.anyio, pytest.mark.redis]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def login(harness: Harness, uid: str) -> str:
    async with client(harness.app) as http:
        response = await http.post("/login", params={"uid": uid})
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


async def status(harness: Harness, token: str) -> int:
    async with client(harness.app) as http:
        return (await http.get("/protected", headers=bearer(token))).status_code


async def test_revoke_then_flush_then_check_rejects_and_new_logins_work(private_redis: RedisServer) -> None:
    harness = build_app(private_redis.url)
    revoked, kept = await login(harness, "alice"), await login(harness, "bob")
    await harness.rev.revoke_token(revoked)
    await harness.rev.bump_user_epoch("carol")
    assert await status(harness, revoked) == 401
    assert await status(harness, kept) == 200

    admin = private_redis.client()
    admin.flushall()
    admin.close()

    assert await status(harness, revoked) == 401
    assert await status(harness, kept) == 401
    assert (await harness.rev.check(kept)).reason is Reason.LOST_STATE
    fresh = await login(harness, "alice")
    assert await status(harness, fresh) == 200
    harness.rev.store.sync.close()


async def test_a_restart_without_persistence_loses_state_into_rejection(private_redis: RedisServer) -> None:
    harness = build_app(private_redis.url)
    token = await login(harness, "alice")
    assert await status(harness, token) == 200
    private_redis.restart()
    assert await status(harness, token) == 401
    assert (await harness.rev.check(token)).reason is Reason.LOST_STATE
    assert await status(harness, await login(harness, "alice")) == 200
    harness.rev.store.sync.close()


async def test_eviction_under_memory_pressure_never_accepts_a_revoked_token(private_redis: RedisServer) -> None:
    admin = private_redis.client()
    harness = build_app(private_redis.url)
    users = [f"user-{index}" for index in range(60)]
    tokens = {uid: await login(harness, uid) for uid in users}
    revoked = users[::2]
    for uid in revoked:
        await harness.rev.bump_user_epoch(uid, reason="eviction drill")
    # Leave the server a little room, then flood it: allkeys-lru must evict our records too.
    used = int(admin.info("memory")["used_memory"])
    admin.config_set("maxmemory", used + 256 * 1024)
    admin.config_set("maxmemory-policy", "allkeys-lru")
    junk = b"x" * 2048
    for index in range(2000):
        admin.set(f"junk:{index}", junk)
    assert int(admin.info("stats")["evicted_keys"]) > 0
    reasons = {uid: (await harness.rev.check(tokens[uid])).reason for uid in users}
    for uid in revoked:
        assert reasons[uid] in (Reason.USER_EPOCH, Reason.LOST_STATE, Reason.GLOBAL_EPOCH), uid
    assert Reason.LOST_STATE in reasons.values()  # something of ours really was evicted
    for uid in users[1::2]:
        assert reasons[uid] in (Reason.ACCEPTED, Reason.LOST_STATE, Reason.GLOBAL_EPOCH), uid
    # Make room again: logins work and their tokens are accepted.
    admin.config_set("maxmemory", 0)
    assert await status(harness, await login(harness, "user-0")) == 200
    admin.close()
    harness.rev.store.sync.close()


async def test_eviction_never_brings_back_a_revoked_jti_or_session(private_redis: RedisServer) -> None:
    """Single-token and session revocations live in the same key as what they protect.

    A revoked jti is a field of its user's hash, next to the user's record, and a session's
    revoked flag is in the session's record: eviction can drop them only together with the
    record the token needs, so a revoked token ends in lost state (a re-login), never accepted.
    """
    admin = private_redis.client()
    harness = build_app(private_redis.url)
    users = [f"user-{index}" for index in range(80)]
    revoked_jti: dict[str, str] = {}
    revoked_session: dict[str, str] = {}
    kept: dict[str, str] = {}
    for uid in users:
        # Each user keeps a live token, so the user's record is in use and worth keeping.
        kept[uid] = await login(harness, uid)
        revoked_jti[uid] = await login(harness, uid)
        await harness.rev.revoke_token(revoked_jti[uid])
        sid = f"session-of-{uid}"
        revoked_session[uid] = harness.auth.create_access_token(uid=uid, data={"session_id": sid})
        await harness.rev.revoke_session(sid)
    # Evict by least frequent use among keys with an expiry (all of ours but the global record),
    # counting every access (log factor 0): the users' records are read by every check of their
    # live tokens, the revocations never, so the flood below evicts revocations first. Kept in
    # keys of their own, as they once were, revoked tokens would then be accepted again.
    used = int(admin.info("memory")["used_memory"])
    admin.config_set("lfu-log-factor", 0)
    admin.config_set("maxmemory-policy", "volatile-lfu")
    admin.config_set("maxmemory", used + 256 * 1024)
    junk = b"x" * 2048
    for _ in range(20):  # the records' use counts climb well above the revocations'
        for uid in users:
            await harness.rev.check(kept[uid])
    index = 0
    while int(admin.info("stats")["evicted_keys"]) < 40 and index < 5000:
        admin.set(f"junk:{index}", junk)  # no expiry: never evicted, it only takes the room
        index += 1
    assert int(admin.info("stats")["evicted_keys"]) > 0
    rejected = (Reason.TOKEN_REVOKED, Reason.SESSION_REVOKED, Reason.LOST_STATE, Reason.GLOBAL_EPOCH)
    reasons: dict[Reason, int] = {}
    for uid in users:
        for token in (revoked_jti[uid], revoked_session[uid]):
            reason = (await harness.rev.check(token)).reason
            assert reason in rejected, (uid, reason)
            reasons[reason] = reasons.get(reason, 0) + 1
    assert reasons.get(Reason.LOST_STATE, 0) > 0  # eviction really reached our keys
    still_accepted = [uid for uid in users if (await harness.rev.check(kept[uid])).accepted]
    assert still_accepted  # and yet records survived: the eviction was partial
    admin.config_set("maxmemory", 0)
    assert await status(harness, await login(harness, "user-0")) == 200
    admin.close()
    harness.rev.store.sync.close()


async def test_a_dead_redis_is_a_503_and_service_resumes_without_an_app_restart(private_redis: RedisServer) -> None:
    harness = build_app(private_redis.url)
    token = await login(harness, "alice")
    assert await status(harness, token) == 200

    private_redis.stop()
    async with client(harness.app) as http:
        response = await http.get("/protected", headers=bearer(token))
    assert response.status_code == 503
    assert response.json() == {"message": STORE_UNAVAILABLE_MESSAGE, "error_type": "StoreUnavailableError"}
    assert response.headers["Retry-After"] == "1"

    private_redis.start()  # same port, empty (no persistence): the old token is lost state
    assert await status(harness, token) == 401
    assert await status(harness, await login(harness, "alice")) == 200
    harness.rev.store.sync.close()


async def test_with_aof_the_same_token_works_again_after_a_restart_and_revocations_survive(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "aof", "--appendonly", "yes", "--appendfsync", "always").start()
    try:
        harness = build_app(server.url)
        token, revoked = await login(harness, "alice"), await login(harness, "bob")
        await harness.rev.revoke_token(revoked)
        server.stop()
        assert await status(harness, token) == 503
        server.start()
        assert await status(harness, token) == 200
        assert await status(harness, revoked) == 401
        assert (await harness.rev.check(revoked)).reason is Reason.TOKEN_REVOKED
        harness.rev.store.sync.close()
    finally:
        server.stop()


async def test_a_hung_redis_fails_fast_with_a_503_and_recovers(private_redis: RedisServer) -> None:
    harness = build_app(private_redis.url)
    token = await login(harness, "alice")
    assert await status(harness, token) == 200
    private_redis.pause()
    try:
        started = time.perf_counter()
        assert await status(harness, token) == 503
        assert time.perf_counter() - started < 2  # 0.25 s socket timeout, no retry on timeouts
    finally:
        private_redis.resume()
    assert await status(harness, token) == 200
    harness.rev.store.sync.close()

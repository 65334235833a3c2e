"""Deployment: Redis by URL, clients you build (Sentinel), Redis Cluster."""

import os
import uuid

import redis
import redis.asyncio
from authx import AuthX, AuthXConfig
from redis.asyncio.sentinel import Sentinel as AsyncSentinel
from redis.sentinel import Sentinel

import authx_epoch
from authx_epoch.stores.redis import RedisStore


def new_auth() -> AuthX:
    return AuthX(
        config=AuthXConfig(JWT_SECRET_KEY="change-me-to-a-long-random-secret!", JWT_TOKEN_LOCATION=["headers"])
    )


redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
app_prefix = f"docs-example-{uuid.uuid4().hex}"  # so the example never touches anyone's keys

# --8<-- [start:sentinel]
sentinels = [("sentinel-1", 26379), ("sentinel-2", 26379), ("sentinel-3", 26379)]
timeouts = {"socket_timeout": 0.25, "socket_connect_timeout": 0.25}
sentinel_store = RedisStore(
    client=AsyncSentinel(sentinels, **timeouts).master_for("mymaster", **timeouts),
    sync_client=Sentinel(sentinels, **timeouts).master_for("mymaster", **timeouts),
    prefix="myapp",
)
# --8<-- [end:sentinel]

# --8<-- [start:cluster]
cluster_store = RedisStore.from_url("redis+cluster://10.0.0.1:7000,10.0.0.2:7000,10.0.0.3:7000?prefix=myapp")
# --8<-- [end:cluster]
assert sentinel_store.kind == "redis" and cluster_store.kind == "redis+cluster"  # built; nothing connected yet


def redis_answers() -> bool:
    probe = redis.Redis.from_url(redis_url, socket_timeout=0.5, socket_connect_timeout=0.5)
    try:
        return bool(probe.ping())
    except redis.RedisError:
        return False
    finally:
        probe.close()


if redis_answers():
    # --8<-- [start:url]
    # Two AuthX apps (think: workers on two machines) on one Redis see each other's bumps.
    worker_a, worker_b = new_auth(), new_auth()
    revocation_a = authx_epoch.install(worker_a, store=f"{redis_url}?prefix={app_prefix}&socket_timeout=0.25")
    revocation_b = authx_epoch.install(worker_b, store=RedisStore.from_url(redis_url, prefix=app_prefix))
    token = worker_a.create_access_token(uid="alice")
    assert revocation_b.sync.check(token).accepted
    revocation_a.sync.bump_user_epoch("alice", reason="password_change")
    assert revocation_b.sync.check(token).reason is authx_epoch.Reason.USER_EPOCH
    # --8<-- [end:url]
    revocation_a.store.sync.wipe()  # deletes this prefix's keys only
    for service in (revocation_a, revocation_b):
        service.store.sync.close()
else:
    print(f"no Redis at {redis_url}: set REDIS_URL to run the Redis part of this example")

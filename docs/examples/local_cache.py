"""Deployment: the opt-in local cache in front of Redis (one URL option, or LocalCache for store objects)."""

import os
import time
import uuid

import redis
from authx import AuthX, AuthXConfig

import authx_epoch
from authx_epoch.stores.cache import LocalCache
from authx_epoch.stores.redis import RedisStore


def new_auth() -> AuthX:
    return AuthX(
        config=AuthXConfig(JWT_SECRET_KEY="change-me-to-a-long-random-secret!", JWT_TOKEN_LOCATION=["headers"])
    )


def redis_answers(url: str) -> bool:
    probe = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
    try:
        return bool(probe.ping())
    except redis.RedisError:
        return False
    finally:
        probe.close()


redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
app_prefix = f"docs-example-{uuid.uuid4().hex}"  # so the example never touches anyone's keys

if redis_answers(redis_url):
    # --8<-- [start:cache]
    # Two workers, each answering checks from its own memory; every write through either one
    # is published on "<prefix>:changes" and dropped from the other's memory at once.
    worker_a, worker_b = new_auth(), new_auth()
    revocation_a = authx_epoch.install(worker_a, store=f"{redis_url}?prefix={app_prefix}&local_cache=1")
    cached = LocalCache(RedisStore.from_url(redis_url, prefix=app_prefix), staleness=0.5)
    revocation_b = authx_epoch.install(worker_b, store=cached)

    token = worker_a.create_access_token(uid="alice")
    assert revocation_b.sync.check(token).accepted  # read from Redis once...
    assert revocation_b.sync.check(token).accepted  # ...then from memory for up to 0.5 s
    revocation_a.sync.bump_user_epoch("alice", reason="password_change")
    # --8<-- [end:cache]
    deadline = time.monotonic() + 5
    while revocation_b.sync.check(token).accepted:  # the channel's message is milliseconds away
        assert time.monotonic() < deadline, "worker B never saw the bump"
        time.sleep(0.001)
    assert revocation_b.sync.check(token).reason is authx_epoch.Reason.USER_EPOCH
    revocation_a.store.sync.wipe()  # deletes this prefix's keys only
    for service in (revocation_a, revocation_b):
        service.store.sync.close()
else:
    print(f"no Redis at {redis_url}: set REDIS_URL to run this example")

"""The opt-in local cache in front of Redis: checks answered from memory."""

import os
import time
import uuid

from authx import AuthX, AuthXConfig

import authx_epoch
from authx_epoch.stores.cache import LocalCache
from authx_epoch.stores.redis import RedisStore


def new_auth() -> AuthX:
    secret = "change-me-to-a-long-random-secret!"
    return AuthX(config=AuthXConfig(JWT_SECRET_KEY=secret))


redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
prefix = f"example-{uuid.uuid4().hex[:8]}"  # keys of this run's own

# Two workers, each answering checks from its own memory. Every write
# through either one is published on "<prefix>:changes", and the other
# drops what it remembered at once.
# Two workers in one process here (in life, one per process): both say they
# share the root namespace on purpose, or the second install() is refused.
worker_a, worker_b = new_auth(), new_auth()
revocation_a = authx_epoch.install(
    worker_a, store=f"{redis_url}?prefix={prefix}&local_cache=1", namespace=""
)
cached = LocalCache(
    RedisStore.from_url(redis_url, prefix=prefix), staleness=0.5
)
revocation_b = authx_epoch.install(worker_b, store=cached, namespace="")

token = worker_a.create_access_token(uid="alice")
assert revocation_b.sync.check(token).accepted  # read from Redis once...
assert revocation_b.sync.check(token).accepted  # ...then from memory
revocation_a.sync.bump_user_epoch("alice", reason="password_change")

deadline = time.monotonic() + 5
while revocation_b.sync.check(token).accepted:  # milliseconds, in practice
    assert time.monotonic() < deadline, "worker B never saw the bump"
    time.sleep(0.001)
decision = revocation_b.sync.check(token)
assert decision.reason is authx_epoch.Reason.USER_EPOCH

revocation_a.store.sync.wipe()  # deletes this run's prefix only
for service in (revocation_a, revocation_b):
    service.store.sync.close()  # when the app stops

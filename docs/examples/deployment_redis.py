"""Redis: two AuthX apps (think: workers on two machines) share revocations."""

import os
import uuid

from authx import AuthX, AuthXConfig

import authx_epoch
from authx_epoch.stores.redis import RedisStore


def new_auth() -> AuthX:
    secret = "change-me-to-a-long-random-secret!"
    return AuthX(config=AuthXConfig(JWT_SECRET_KEY=secret))


redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
prefix = f"example-{uuid.uuid4().hex[:8]}"  # keys of this run's own

# Two workers in one process here (in life, one per process): both say they
# share the root namespace on purpose, or the second install() is refused.
worker_a, worker_b = new_auth(), new_auth()
# By URL, options in the query...
revocation_a = authx_epoch.install(
    worker_a,
    store=f"{redis_url}?prefix={prefix}&socket_timeout=0.25",
    namespace="",
)
# ...or a store object built from the URL, options as keywords.
revocation_b = authx_epoch.install(
    worker_b, store=RedisStore.from_url(redis_url, prefix=prefix), namespace=""
)

token = worker_a.create_access_token(uid="alice")
assert revocation_b.sync.check(token).accepted
revocation_a.sync.bump_user_epoch("alice", reason="password_change")
decision = revocation_b.sync.check(token)  # the other worker's next check
assert decision.reason is authx_epoch.Reason.USER_EPOCH

revocation_a.store.sync.wipe()  # deletes this run's prefix only
for service in (revocation_a, revocation_b):
    service.store.sync.close()  # when the app stops

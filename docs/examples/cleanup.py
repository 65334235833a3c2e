"""Cleanup: revoked ids expire with their tokens; user records stay one per user."""

import datetime as dt
import time

from authx import AuthX, AuthXConfig

import authx_epoch


class MovableClock:
    """A clock we can move forward, instead of waiting an hour."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


# --8<-- [start:expire]
clock = MovableClock()
auth = AuthX(config=AuthXConfig(JWT_SECRET_KEY="change-me-to-a-long-random-secret!", JWT_TOKEN_LOCATION=["headers"]))
revocation = authx_epoch.install(auth, store="memory://", clock=clock, revocation_leeway=dt.timedelta(seconds=60))

for _ in range(1000):  # a thousand logouts: each keeps one jti until its token expires
    revocation.sync.revoke_token(auth.create_access_token(uid="alice", expiry=dt.timedelta(minutes=15)))
for _ in range(1000):  # a thousand logout-alls: each is one write to the same record
    revocation.sync.bump_user_epoch("bob", reason="logout_all")

stats = revocation.sync.stats()
assert (stats.revoked_tokens, stats.users) == (1000, 2)

clock.now += 15 * 60 + 61  # the tokens' exp, plus the leeway
assert revocation.sync.stats().revoked_tokens == 0  # gone, without a cleanup job
# --8<-- [end:expire]
print(revocation.sync.stats())

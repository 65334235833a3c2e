"""Cleanup: revoked ids expire with their tokens; a user stays one record."""

import datetime as dt
import time

from authx import AuthX, AuthXConfig

import authx_epoch


class Clock:
    """A clock moved by hand, instead of waiting a quarter of an hour."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


clock = Clock()  # an app leaves clock= out: the wall clock
auth = AuthX(
    config=AuthXConfig(JWT_SECRET_KEY="change-me-to-a-long-random-secret!")
)
revocation = authx_epoch.install(
    auth,
    store="memory://",
    revocation_leeway=dt.timedelta(seconds=60),  # the default
    clock=clock,
)

fifteen_minutes = dt.timedelta(minutes=15)
for _ in range(1000):  # a thousand logouts: each keeps one jti for a while
    token = auth.create_access_token(uid="alice", expiry=fifteen_minutes)
    revocation.sync.revoke_token(token)
for _ in range(1000):  # a thousand logout-alls: one record, rewritten
    revocation.sync.bump_user_epoch("bob", reason="logout_all")

stats = revocation.sync.stats()
assert (stats.revoked_tokens, stats.users) == (1000, 2)

clock.now += 15 * 60 + 61  # past the tokens' exp, plus the leeway
assert revocation.sync.stats().revoked_tokens == 0  # gone, no cleanup job

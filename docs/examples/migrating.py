"""After: install authx-epoch with a migration window for unstamped tokens."""

import datetime as dt
import time

from authx import AuthX, AuthXConfig

import authx_epoch


class Clock:
    """A clock moved by hand, instead of waiting for the deadline."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


config = AuthXConfig(JWT_SECRET_KEY="change-me-to-a-long-random-secret!")
before = AuthX(config=config)  # the app as it ran before the migration
old_alice = before.create_access_token(uid="alice")
old_bob = before.create_access_token(uid="bob")

clock = Clock()  # an app leaves clock= out: the wall clock
clock.now += 1  # the deploy comes after the tokens it must keep working

auth = AuthX(config=config)
revocation = authx_epoch.install(
    auth,
    store="memory://",
    # Close the window once every token minted before the deploy has
    # expired (AuthX's default lifetime of access tokens: 15 minutes).
    accept_unstamped_until=(
        dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=15)
    ),
    clock=clock,
)

check = revocation.sync.check
assert check(old_alice).accepted  # unstamped, nothing moved since: accepted
revocation.sync.bump_user_epoch("alice", reason="logout_all")
assert (
    check(old_alice).reason is authx_epoch.Reason.UNSTAMPED
)  # her epoch moved
assert check(old_bob).accepted

clock.now += 15 * 60  # the deadline passes: every unstamped token is refused
assert check(old_bob).reason is authx_epoch.Reason.UNSTAMPED
assert check(auth.create_access_token(uid="bob")).accepted  # stamped: fine

"""After: install authx-epoch with a migration window, so live unstamped tokens keep working."""

import datetime as dt
import time

from authx import AuthX, AuthXConfig

import authx_epoch


class MovableClock:
    """A clock we can move forward, instead of waiting for the deadline."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


config = AuthXConfig(JWT_SECRET_KEY="change-me-to-a-long-random-secret!", JWT_TOKEN_LOCATION=["headers"])
before = AuthX(config=config)  # the app as it ran before the migration
old_alice, old_bob = before.create_access_token(uid="alice"), before.create_access_token(uid="bob")

clock = MovableClock()
clock.now += 1  # the deploy comes later than the tokens it must keep working

# --8<-- [start:window]
auth = AuthX(config=config)
revocation = authx_epoch.install(
    auth,
    store="memory://",
    # Close the window once every token minted before the deploy has expired (AuthX's default: 15 minutes).
    accept_unstamped_until=dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=15),
    clock=clock,
)
# --8<-- [end:window]

# --8<-- [start:rules]
check = revocation.sync.check
assert check(old_alice).accepted  # minted before install, nothing moved since: accepted
revocation.sync.bump_user_epoch("alice", reason="logout_all")
assert check(old_alice).reason is authx_epoch.Reason.UNSTAMPED  # her epoch moved: refused
assert check(old_bob).accepted

clock.now += 15 * 60  # the deadline passes
assert check(old_bob).reason is authx_epoch.Reason.UNSTAMPED  # every unstamped token is refused
assert check(auth.create_access_token(uid="bob")).accepted  # stamped tokens are unaffected
# --8<-- [end:rules]

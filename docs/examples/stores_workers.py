"""SQLite: two AuthX apps (think: two workers) on one file see each other."""

from authx import AuthX, AuthXConfig

import authx_epoch


def new_auth() -> AuthX:
    secret = "change-me-to-a-long-random-secret!"
    return AuthX(config=AuthXConfig(JWT_SECRET_KEY=secret))


# Two workers in one process here (in life, one per process): both say they
# share the root namespace on purpose, or the second install() is refused.
worker_a, worker_b = new_auth(), new_auth()
revocation_a = authx_epoch.install(
    worker_a, store="sqlite:///workers.db", namespace=""
)
revocation_b = authx_epoch.install(
    worker_b, store="sqlite:///workers.db", namespace=""
)

token = worker_a.create_access_token(uid="alice")
assert revocation_b.sync.check(token).accepted
revocation_a.sync.bump_user_epoch("alice", reason="password_change")
decision = revocation_b.sync.check(token)  # the other worker's next check
assert decision.reason is authx_epoch.Reason.USER_EPOCH

for service in (revocation_a, revocation_b):
    service.store.close()  # when the app stops

"""JTI versus full token: what revoke_token keeps, from a script (sync API)."""

import time

from authx import AuthX, AuthXConfig

import authx_epoch

auth = AuthX(
    config=AuthXConfig(JWT_SECRET_KEY="change-me-to-a-long-random-secret!")
)
revocation = authx_epoch.install(auth, store="memory://")
token = auth.create_access_token(uid="alice")

# A script or a sync view: the same methods, blocking, on revocation.sync.
revocation.sync.revoke_token(token)  # its signature is verified, its jti kept

assert revocation.sync.check(token).reason is authx_epoch.Reason.TOKEN_REVOKED
assert revocation.sync.stats().revoked_tokens == 1  # one short id, no token

forged = token[:-4] + "AAAA"
try:  # a forged signature is refused: nothing is written
    revocation.sync.revoke_token(forged)
except authx_epoch.InvalidTokenError as error:
    print(f"refused: {error}")
else:
    raise AssertionError("a forged token was accepted")

# A token that has already expired needs nothing: nothing is kept.
expired = auth.create_access_token(uid="alice", expiry=int(time.time()) - 60)
revocation.sync.revoke_token(expired)
assert revocation.sync.stats().revoked_tokens == 1

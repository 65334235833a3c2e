"""JTI versus full token: what revoke_token keeps, and the sync twin for scripts."""

import time

from authx import AuthX, AuthXConfig

import authx_epoch

auth = AuthX(config=AuthXConfig(JWT_SECRET_KEY="change-me-to-a-long-random-secret!", JWT_TOKEN_LOCATION=["headers"]))
revocation = authx_epoch.install(auth, store="memory://")

# --8<-- [start:revoke]
token = auth.create_access_token(uid="alice")

# A script or a sync view: the same methods, blocking, on revocation.sync.
revocation.sync.revoke_token(token)  # the raw token: its signature is verified, its jti kept

assert revocation.sync.check(token).reason is authx_epoch.Reason.TOKEN_REVOKED
stats = revocation.sync.stats()
assert stats.revoked_tokens == 1  # one short id, not the token string
# --8<-- [end:revoke]

# --8<-- [start:refuse]
try:
    revocation.sync.revoke_token(token[:-4] + "AAAA")  # a forged signature is not written anywhere
except authx_epoch.InvalidTokenError as error:
    print(f"refused: {error}")
else:
    raise AssertionError("a forged token was accepted for revocation")
# --8<-- [end:refuse]

expired = auth.create_access_token(uid="alice", expiry=int(time.time()) - 3600)
revocation.sync.revoke_token(expired)  # already expired: nothing to keep
assert revocation.sync.stats().revoked_tokens == 1

"""install(): rename the claims it stamps; a name AuthX uses is refused."""

import jwt
from authx import AuthX, AuthXConfig

import authx_epoch

auth = AuthX(
    config=AuthXConfig(JWT_SECRET_KEY="change-me-to-a-long-random-secret!")
)
names = authx_epoch.ClaimNames(
    user_epoch="acme_uep", global_epoch="acme_gep", session_id="sid"
)
authx_epoch.install(auth, store="memory://", claims=names)

token = auth.create_access_token(uid="alice")
claims = jwt.decode(token, options={"verify_signature": False})
assert {"acme_uep", "acme_gep"} <= set(claims)

try:
    authx_epoch.ClaimNames(user_epoch="sub")  # AuthX's own claim: refused
except authx_epoch.ConfigurationError as error:
    print(f"refused: {error}")
else:
    raise AssertionError("a claim name AuthX uses was accepted")

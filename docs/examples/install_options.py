"""install(): claim names, and the implicit-refresh middleware that must come after it."""

import asyncio
import datetime as dt

import httpx
import jwt
from authx import AuthX, AuthXConfig, TokenPayload
from fastapi import Depends, FastAPI

import authx_epoch


def new_auth() -> AuthX:
    return AuthX(
        config=AuthXConfig(JWT_SECRET_KEY="change-me-to-a-long-random-secret!", JWT_TOKEN_LOCATION=["cookies"])
    )


# --8<-- [start:claims]
names = authx_epoch.ClaimNames(user_epoch="acme_uep", global_epoch="acme_gep", session_id="sid")
custom_auth = new_auth()
authx_epoch.install(custom_auth, store="memory://", claims=names)

try:
    authx_epoch.ClaimNames(user_epoch="sub")  # would collide with a claim AuthX itself uses
except authx_epoch.ConfigurationError as error:
    print(f"refused: {error}")
# --8<-- [end:claims]

# --8<-- [start:order]
app = FastAPI()
auth = new_auth()
auth.handle_errors(app)
revocation = authx_epoch.install(auth, store="memory://", app=app)  # first...
app.middleware("http")(auth.implicit_refresh_middleware)  # ...then the middleware: the checked one
# --8<-- [end:order]


@app.get("/me")
async def me(payload: TokenPayload = Depends(auth.access_token_required)) -> dict[str, str]:
    return {"uid": str(payload.sub)}


# --8<-- [start:wrong]
wrong_app, wrong_auth = FastAPI(), new_auth()
wrong_app.middleware("http")(wrong_auth.implicit_refresh_middleware)  # AuthX's own, unchecked: a trap
try:
    authx_epoch.install(wrong_auth, store="memory://", app=wrong_app)
except authx_epoch.ConfigurationError as error:
    print(f"refused: {error}")
# --8<-- [end:wrong]
else:
    raise AssertionError("install() accepted an app whose middleware was registered first")


async def main() -> None:
    claims = jwt.decode(custom_auth.create_access_token(uid="alice"), options={"verify_signature": False})
    assert {"acme_uep", "acme_gep"} <= set(claims)
    # Tokens closer to expiry than JWT_IMPLICIT_REFRESH_DELTATIME (10 minutes) are re-minted.
    near_expiry = {"expiry": dt.timedelta(minutes=5)}
    kept = auth.create_access_token(uid="alice", **near_expiry)
    revoked = auth.create_access_token(uid="alice", **near_expiry)
    await revocation.revoke_token(revoked)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app") as client:
        # --8<-- [start:walk]
        ok = await client.get("/me", headers={"Cookie": f"access_token_cookie={kept}"})
        assert ok.status_code == 200 and "access_token_cookie" in ok.headers["set-cookie"]  # refreshed
        refused = await client.get("/me", headers={"Cookie": f"access_token_cookie={revoked}"})
        assert refused.status_code == 401 and "set-cookie" not in refused.headers  # never laundered
        # --8<-- [end:walk]


if __name__ == "__main__":
    asyncio.run(main())

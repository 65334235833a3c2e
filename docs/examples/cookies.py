"""Cookies: HttpOnly tokens, CSRF double submit, logout per device."""

import asyncio

import httpx
from authx import AuthX, AuthXConfig, TokenPayload
from fastapi import Depends, FastAPI, Response

import authx_epoch

app = FastAPI()
auth = AuthX(
    config=AuthXConfig(
        JWT_SECRET_KEY="change-me-to-a-long-random-secret!",
        JWT_TOKEN_LOCATION=["cookies"],
        JWT_COOKIE_CSRF_PROTECT=True,  # the default: POSTs need X-CSRF-TOKEN
        JWT_COOKIE_SECURE=True,  # the default: HTTPS only
        JWT_COOKIE_SAMESITE="strict",
        # The refresh token goes to the refresh route only.
        JWT_REFRESH_COOKIE_PATH="/refresh",
    )
)
auth.handle_errors(app)
revocation = authx_epoch.install(auth, store="memory://", app=app)


@app.post("/login")
async def login(response: Response) -> dict[str, str]:
    # (Check the password first.) A new session, its tokens in cookies.
    pair = await revocation.create_token_pair("alice", fresh=True)
    auth.set_access_cookies(pair.access_token, response)
    auth.set_refresh_cookies(pair.refresh_token, response)
    return {"session_id": pair.session_id}  # never the tokens themselves


@app.get("/me")
async def me(
    payload: TokenPayload = Depends(auth.access_token_required),
) -> dict[str, str]:
    return {"uid": str(payload.sub)}


@app.post("/refresh")
async def refresh(
    tokens: authx_epoch.SessionTokens = Depends(revocation.rotated_tokens),
) -> dict[str, str]:
    # CSRF checked as AuthX checks it; the new cookies are already set.
    return {"session_id": tokens.session_id}


@app.post("/logout")
async def logout(
    response: Response,
    session_id: str = Depends(revocation.current_session),
) -> dict[str, str]:
    await revocation.revoke_session(session_id)  # this device only
    auth.unset_cookies(response)
    return {"logged_out": session_id}


@app.post("/logout-all")
async def logout_all(
    response: Response,
    payload: TokenPayload = Depends(auth.access_token_required),
) -> dict[str, str]:
    await revocation.bump_user_epoch(str(payload.sub))  # every device
    auth.unset_cookies(response)
    return {"logged_out": str(payload.sub)}


def device() -> httpx.AsyncClient:
    """A browser: its own cookie jar (https, so Secure cookies are sent)."""
    transport = httpx.ASGITransport(app=app)
    return httpx.AsyncClient(transport=transport, base_url="https://app")


def csrf(client: httpx.AsyncClient, kind: str) -> dict[str, str]:
    """What the page's script sends: the CSRF cookie's value, as a header."""
    return {"X-CSRF-TOKEN": client.cookies[f"csrf_{kind}_token"]}


def old_access(client: httpx.AsyncClient) -> dict[str, str]:
    """The access cookie as it is now, to present again after a logout."""
    token = client.cookies["access_token_cookie"]
    return {"Cookie": f"access_token_cookie={token}"}


async def main() -> None:
    async with device() as laptop, device() as phone:
        await laptop.post("/login")
        await phone.post("/login")
        assert (await laptop.get("/me")).json() == {"uid": "alice"}

        # The cookies alone (a cross-site form post) rotate nothing.
        assert (await laptop.post("/refresh")).status_code == 401
        old = laptop.cookies["refresh_token_cookie"]
        refreshed = await laptop.post(
            "/refresh", headers=csrf(laptop, "refresh")
        )
        assert refreshed.status_code == 200
        assert laptop.cookies["refresh_token_cookie"] != old

        # Log out the laptop: its cookies are cleared, and put back they are
        # refused. The phone keeps working.
        kept = old_access(laptop)
        await laptop.post("/logout", headers=csrf(laptop, "access"))
        assert (await laptop.get("/me")).status_code == 401
        response = await laptop.get("/me", headers=kept)
        assert response.json()["error_type"] == "RevokedTokenError"
        assert (await phone.get("/me")).status_code == 200

        # Log out everywhere from the phone: one epoch bump.
        kept = old_access(phone)
        await phone.post("/logout-all", headers=csrf(phone, "access"))
        response = await phone.get("/me", headers=kept)
        assert response.json()["error_type"] == "RevokedTokenError"
    print("cookies: refresh with CSRF, one device out, then every device")


if __name__ == "__main__":
    asyncio.run(main())

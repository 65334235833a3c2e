"""``install()``: plug epoch revocation into an AuthX instance through its public API only.

What it does to ``auth``:

* wraps ``create_access_token`` and ``create_refresh_token`` (and so ``create_token_pair``) so
  every token carries the user's and the global epoch, and a token minted for a session (a
  ``session_id`` in its data) the generation of that session's record;
* registers the blocklist callback with ``auth.set_token_blocklist`` and proves AuthX calls it;
* replaces ``implicit_refresh_middleware`` by one that checks revocation before it re-mints and
  keeps the presented token's stamps and session (AuthX 1.7.1's would launder a revoked cookie);
* makes ``auth.revoke_session`` and ``auth.revoke_all_sessions`` revoke the tokens too;
* with ``app=``, answers store trouble with a 503 in AuthX's error shape.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import time
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, Optional, Union

import jwt
from authx import AuthX
from authx.exceptions import AuthXException
from authx.schema import TokenPayload
from fastapi import FastAPI, Request, Response, WebSocket
from fastapi.responses import JSONResponse
from starlette.middleware.base import BaseHTTPMiddleware

from authx_epoch.claims import AUTHX_CLAIMS, ClaimNames, stamp_claims
from authx_epoch.errors import ConfigurationError, StoreUnavailableError
from authx_epoch.revocation import Clock, DecisionHook, EpochRevocation
from authx_epoch.sessions import DEFAULT_REFRESH_REUSE_GRACE, expiry_timestamp
from authx_epoch.stores import StoreSpec, open_store

#: The embedded default store: a SQLite file in the working directory.
DEFAULT_STORE = "sqlite:///authx-epoch.db"

#: The message of the 503 answered when the store cannot be reached (fail-closed).
STORE_UNAVAILABLE_MESSAGE = "Token revocation service unavailable, try again shortly"

_INSTALLED = "_authx_epoch_revocation"


class _Probe(str):
    """A string no request can produce.

    install() sends it through AuthX to prove that AuthX really calls and awaits the callback.
    """


_PROBE = _Probe("authx-epoch:probe")


def _lifetime(value: Optional[dt.timedelta], fallback: dt.timedelta) -> dt.timedelta:
    return value if isinstance(value, dt.timedelta) else fallback


def _session_of(data: Optional[dict[str, Any]], claim: str) -> Optional[str]:
    """The session id a token is being minted with (read as the check reads it), or ``None``."""
    value = data.get(claim) if data else None
    if isinstance(value, str) and value:
        return value
    if type(value) is int:
        return str(value)
    return None


def _authx_verifier(auth: AuthX[Any]) -> Callable[..., Optional[Mapping[str, Any]]]:
    """Verify a token exactly as AuthX would: its key, the previous key, algorithm, audience, issuer."""

    def verify(token: str, *, verify_exp: bool = True) -> Optional[Mapping[str, Any]]:
        config = auth.config
        keys = [config.public_key]
        if config.previous_public_key:
            keys.append(config.previous_public_key)
        for key in keys:
            try:
                payload: dict[str, Any] = jwt.decode(
                    token,
                    key=key,
                    algorithms=[config.JWT_ALGORITHM],
                    audience=config.JWT_DECODE_AUDIENCE,
                    issuer=config.JWT_DECODE_ISSUER,
                    options={"verify_exp": verify_exp},
                )
            except (jwt.PyJWTError, ValueError, TypeError):
                continue
            return payload
        return None

    return verify


def _carried_claims(payload: TokenPayload) -> dict[str, Any]:
    """The presented token's own claims to keep in a re-minted one: stamps, session, app data."""
    extra = payload.model_extra or {}
    return {key: value for key, value in extra.items() if key not in AUTHX_CLAIMS}


def _registered_dispatchers(app: FastAPI) -> list[Any]:
    return [
        middleware.kwargs.get("dispatch")
        for middleware in app.user_middleware
        if getattr(middleware, "cls", None) is BaseHTTPMiddleware
    ]


async def _store_unavailable(conn: Union[Request, WebSocket], exc: Exception) -> Optional[JSONResponse]:
    if conn.scope.get("type") == "websocket":
        # 1013 "try again later" is the WebSocket counterpart of a 503.
        assert isinstance(conn, WebSocket)
        await conn.close(code=1013, reason="revocation store unavailable")
        return None
    return JSONResponse(
        status_code=503,
        content={"message": STORE_UNAVAILABLE_MESSAGE, "error_type": "StoreUnavailableError"},
        headers={"Retry-After": "1"},
    )


def _prove_callback(auth: AuthX[Any]) -> None:
    coroutine = auth.is_token_in_blocklist(_PROBE)
    try:
        coroutine.send(None)
    except StopIteration as done:
        if done.value is True:
            return
    else:
        coroutine.close()
    raise ConfigurationError("AuthX did not call the authx-epoch blocklist callback; revocation would be disabled")


def install(
    auth: AuthX[Any],
    store: StoreSpec = DEFAULT_STORE,
    *,
    app: Optional[FastAPI] = None,
    claims: Optional[ClaimNames] = None,
    fail_open: bool = False,
    accept_unstamped_until: Optional[dt.datetime] = None,
    revocation_leeway: dt.timedelta = dt.timedelta(seconds=60),
    max_token_lifetime: Optional[dt.timedelta] = None,
    session_lifetime: Optional[dt.timedelta] = None,
    clock: Clock = time.time,
    on_decision: Optional[DecisionHook] = None,
    refresh_reuse_grace: dt.timedelta = DEFAULT_REFRESH_REUSE_GRACE,
) -> EpochRevocation:
    """Install epoch revocation on an AuthX instance and return the service.

    Call it once, right after creating ``auth`` and before registering
    ``auth.implicit_refresh_middleware``.

    Args:
        auth: The AuthX instance to protect.
        store: A store URL (``memory://``, ``sqlite:///path.db``) or a store object.
        app: The FastAPI app; pass it so store trouble is answered with a 503 in AuthX's
            error shape (without it, such a request ends in a 500).
        claims: The claim names to stamp (defaults: ``uep``, ``gep``, ``session_id``).
        fail_open: When the store is unreachable, let tokens through unchecked and log it,
            instead of refusing them with a 503. Off by default: it accepts revoked tokens
            for as long as the store is down.
        accept_unstamped_until: Opens a migration window: until this aware datetime, a token
            without a stamp is accepted if it was minted before the store was set up and
            neither its user's nor the global epoch has moved since.
        revocation_leeway: How long past a token's ``exp`` its revocation is kept.
        max_token_lifetime: Lifetime assumed for tokens without ``exp`` (they are refused
            after it). Defaults to the longer of AuthX's access and refresh lifetimes.
        session_lifetime: How long ``revoke_session`` keeps a session revoked when no expiry
            is given. Defaults to the longer of AuthX's access and refresh lifetimes.
        clock: Returns the current Unix time; inject one in tests.
        on_decision: Called with a ``DecisionEvent`` after every check.
        refresh_reuse_grace: For ``rotate_refresh_token``: how long after a rotation the replaced
            refresh token is still answered with the session's current pair (two tabs refreshing
            at once, a response lost on the way) instead of counting as a replay that revokes the
            session. A few seconds, like Auth0's reuse interval; ``timedelta(0)`` for none.

    Returns:
        The ``EpochRevocation`` service; ``revocation.sync`` is its blocking twin.

    Raises:
        ConfigurationError: ``auth`` already has authx-epoch installed, the middleware was
            registered before ``install()``, or the store URL or path is unusable.
    """
    if not isinstance(auth, AuthX):
        raise ConfigurationError(f"install() takes an AuthX instance, got {type(auth).__name__}")
    if getattr(auth, _INSTALLED, None) is not None:
        raise ConfigurationError("authx-epoch is already installed on this AuthX instance; install() it once")
    if app is not None and auth.implicit_refresh_middleware in _registered_dispatchers(app):
        raise ConfigurationError(
            "auth.implicit_refresh_middleware was registered before install(): it would re-mint revoked "
            "tokens. Call authx_epoch.install() first, then app.middleware('http')(auth.implicit_refresh_middleware)"
        )
    config = auth.config
    longest = max(
        (value for value in (config.JWT_ACCESS_TOKEN_EXPIRES, config.JWT_REFRESH_TOKEN_EXPIRES) if value),
        default=dt.timedelta(days=30),
    )
    backend = open_store(store)
    revocation = EpochRevocation(
        backend,
        claims=claims,
        clock=clock,
        fail_open=fail_open,
        accept_unstamped_until=accept_unstamped_until,
        revocation_leeway=revocation_leeway,
        max_token_lifetime=_lifetime(max_token_lifetime, longest),
        session_lifetime=_lifetime(session_lifetime, longest),
        verifier=_authx_verifier(auth),
        on_decision=on_decision,
        auth=auth,
        refresh_reuse_grace=refresh_reuse_grace,
    )
    try:
        backend.sync.setup(clock())
    except StoreUnavailableError as exc:
        raise ConfigurationError(f"the revocation store cannot be set up: {exc}") from exc

    _wrap_minting(auth, revocation)
    _wrap_sessions(auth, revocation)
    _replace_implicit_refresh(auth, revocation)
    _register_callback(auth, revocation)
    if app is not None:
        app.add_exception_handler(StoreUnavailableError, _store_unavailable)  # type: ignore[arg-type]
        app.state.authx_epoch = revocation
    setattr(auth, _INSTALLED, revocation)
    return revocation


def installed(auth: AuthX[Any]) -> Optional[EpochRevocation]:
    """Return the service installed on ``auth``, or ``None``."""
    found = getattr(auth, _INSTALLED, None)
    return found if isinstance(found, EpochRevocation) else None


def _register_callback(auth: AuthX[Any], revocation: EpochRevocation) -> None:
    if revocation._core.reads_inline:
        # A local store answers without waiting, so the callback is a plain function: AuthX then
        # calls it without building and awaiting a coroutine, which is most of what a check with
        # the memory store costs. The sync twin's check is exactly the async one's.
        check = revocation.sync.is_token_revoked

        def is_token_revoked(token: str, **kwargs: Any) -> bool:
            if type(token) is _Probe:
                return True
            return check(token)

        auth.set_token_blocklist(is_token_revoked)
    else:
        check_async = revocation.is_token_revoked

        async def is_token_revoked_async(token: str, **kwargs: Any) -> bool:
            if type(token) is _Probe:
                return True
            return await check_async(token)

        # A plain coroutine function: AuthX picks sync or async with iscoroutinefunction.
        auth.set_token_blocklist(is_token_revoked_async)
    _prove_callback(auth)


def _wrap_minting(auth: AuthX[Any], revocation: EpochRevocation) -> None:
    names = revocation.claims
    session_claim = names.session_id
    stamp = revocation.sync.issue_stamps
    max_lifetime = revocation._core.max_lifetime
    original_access = auth.create_access_token
    original_refresh = auth.create_refresh_token

    def create_access_token(
        uid: str,
        fresh: bool = False,
        headers: Optional[dict[str, Any]] = None,
        expiry: Any = None,
        data: Optional[dict[str, Any]] = None,
        audience: Any = None,
        scopes: Optional[list[str]] = None,
        *args: Any,
        **kwargs: Any,
    ) -> str:
        expires = expiry_timestamp(expiry, auth.config.JWT_ACCESS_TOKEN_EXPIRES, time.time(), max_lifetime)
        data = stamp_claims(data, stamp(uid, expires, _session_of(data, session_claim)), names)
        return original_access(uid, fresh, headers, expiry, data, audience, scopes, *args, **kwargs)

    def create_refresh_token(
        uid: str,
        headers: Optional[dict[str, Any]] = None,
        expiry: Any = None,
        data: Optional[dict[str, Any]] = None,
        audience: Any = None,
        scopes: Optional[list[str]] = None,
        *args: Any,
        **kwargs: Any,
    ) -> str:
        expires = expiry_timestamp(expiry, auth.config.JWT_REFRESH_TOKEN_EXPIRES, time.time(), max_lifetime)
        data = stamp_claims(data, stamp(uid, expires, _session_of(data, session_claim)), names)
        return original_refresh(uid, headers, expiry, data, audience, scopes, *args, **kwargs)

    create_access_token.__doc__ = original_access.__doc__
    create_refresh_token.__doc__ = original_refresh.__doc__
    auth.create_access_token = create_access_token  # type: ignore[method-assign]
    auth.create_refresh_token = create_refresh_token  # type: ignore[method-assign]
    # Kept for the implicit refresh, which must re-mint without restamping, and for the session
    # helpers, which stamp a pair with one store write.
    auth._authx_epoch_unstamped_access = original_access  # type: ignore[attr-defined]
    auth._authx_epoch_unstamped_refresh = original_refresh  # type: ignore[attr-defined]


def _wrap_sessions(auth: AuthX[Any], revocation: EpochRevocation) -> None:
    original_revoke = auth.revoke_session
    original_revoke_all = auth.revoke_all_sessions

    async def revoke_session(session_id: str) -> None:
        await revocation.revoke_session(session_id)
        await original_revoke(session_id)

    async def revoke_all_sessions(uid: str) -> None:
        await revocation.bump_user_epoch(uid, reason="revoke_all_sessions")
        await original_revoke_all(uid)

    revoke_session.__doc__ = "Revoke a session: its record in AuthX's session store and every token minted for it."
    revoke_all_sessions.__doc__ = "Revoke every session of a user: the records and, by bumping the epoch, every token."
    auth.revoke_session = revoke_session  # type: ignore[method-assign]
    auth.revoke_all_sessions = revoke_all_sessions  # type: ignore[method-assign]


def _replace_implicit_refresh(auth: AuthX[Any], revocation: EpochRevocation) -> None:
    mint = auth._authx_epoch_unstamped_access  # type: ignore[attr-defined]
    enabled = auth._implicit_refresh_enabled_for_request

    async def implicit_refresh_middleware(
        request: Request, call_next: Callable[[Request], Coroutine[Any, Any, Response]]
    ) -> Response:
        response = await call_next(request)
        if not (auth.config.has_location("cookies") and enabled(request)):
            return response
        # Store trouble (StoreUnavailableError is an AuthXException) means: no refresh, never a
        # token minted without a check.
        with contextlib.suppress(AuthXException):
            token = await auth.get_access_token_from_request(request, locations=["cookies"])
            if await revocation.is_token_revoked(token.token):
                return response
            payload = auth.verify_token(token, verify_fresh=False, verify_csrf=False)
            if payload.time_until_expiry < auth.config.JWT_IMPLICIT_REFRESH_DELTATIME:
                # Keep the presented token's stamps and session: a re-mint is not a new login.
                new_token = mint(uid=payload.sub, fresh=False, data=_carried_claims(payload), scopes=payload.scopes)
                auth.set_access_cookies(new_token, response=response)
        return response

    implicit_refresh_middleware.__doc__ = auth.implicit_refresh_middleware.__doc__
    auth.implicit_refresh_middleware = implicit_refresh_middleware  # type: ignore[method-assign]


__all__ = ["DEFAULT_STORE", "STORE_UNAVAILABLE_MESSAGE", "install", "installed"]

"""Sessions with AuthX: minting a session's token pair and reading a refresh token for rotation.

A session is what one login creates: every token minted for it (access, refresh, and the pairs
later minted from its refresh token) carries its session id and the generation of its session
record. ``EpochRevocation.create_token_pair`` and ``rotate_refresh_token`` use what is here; the
rotation rules themselves are ``records.rotate`` (pure) and each store's ``rotate_session``.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any, Optional, Protocol

from authx import AuthX
from authx.exceptions import MissingTokenError
from authx.schema import RequestToken, TokenPayload, TokenResponse
from fastapi import Depends, Response

from authx_epoch.claims import AUTHX_CLAIMS, ClaimNames, session_id_of, stamp_claims
from authx_epoch.records import Stamps, unix_time

#: The default grace interval of refresh-token rotation (see ``install(refresh_reuse_grace=...)``).
DEFAULT_REFRESH_REUSE_GRACE = dt.timedelta(seconds=5)


class SessionTokens(TokenResponse):
    """A session's token pair: AuthX's ``TokenResponse`` plus the session id both tokens carry.

    Return it from a login or refresh route as it is: its JSON is AuthX's token response with a
    ``session_id`` field.
    """

    session_id: str


def expiry_timestamp(expiry: Any, default: Optional[dt.timedelta], now: float, unbounded: float) -> float:
    """When a token minted with AuthX's ``expiry`` argument will expire (mirrors AuthX's rules)."""
    value = expiry if expiry is not None else default
    if isinstance(value, dt.timedelta):
        return now + value.total_seconds()
    seconds = unix_time(value)
    return now + unbounded if seconds is None else seconds


@dataclass(frozen=True)
class PairPlan:
    """What one pair of a session will be minted with, and when its longest-lived token expires.

    Attributes:
        uid: The subject.
        session_id: The session both tokens carry.
        fresh: Whether the access token is fresh.
        data: The application's own claims (never the stamps: those come from the store).
        access_expiry: AuthX's ``expiry`` argument for the access token.
        refresh_expiry: AuthX's ``expiry`` argument for the refresh token.
        scopes: The scopes of both tokens.
        expires_at: When the longer-lived of the two expires (Unix seconds).
    """

    uid: str
    session_id: str
    fresh: bool
    data: Optional[dict[str, Any]]
    access_expiry: Any
    refresh_expiry: Any
    scopes: Optional[list[str]]
    expires_at: float


class AuthxMinter:
    """Mints and verifies tokens through one AuthX instance, for the session helpers.

    It keeps AuthX's own methods as they are when it is built (``install()`` builds it before it
    wraps them): they mint exactly what they are given, so a pair costs one store write for both
    tokens, and they verify without the revocation check the caller makes itself.
    """

    def __init__(self, auth: AuthX[Any], names: ClaimNames, max_lifetime: float) -> None:
        """Bind to ``auth``; ``max_lifetime`` is the lifetime assumed for a token without ``exp``."""
        self.auth = auth
        self._names = names
        self._max_lifetime = max_lifetime
        self._stamp_claims = frozenset(
            {names.user_epoch, names.global_epoch, names.session_generation, names.session_id}
        )
        self._mint_access: Callable[..., str] = auth.create_access_token
        self._mint_refresh: Callable[..., str] = auth.create_refresh_token
        self._verify: Callable[..., TokenPayload] = auth.verify_token

    def plan(
        self,
        uid: str,
        session_id: str,
        *,
        fresh: bool,
        data: Optional[Mapping[str, Any]],
        access_expiry: Any,
        refresh_expiry: Any,
        scopes: Optional[list[str]],
    ) -> PairPlan:
        """Describe the pair to mint; ``expires_at`` says how long the store must keep its records."""
        config = self.auth.config
        now = time.time()
        access_until = expiry_timestamp(access_expiry, config.JWT_ACCESS_TOKEN_EXPIRES, now, self._max_lifetime)
        refresh_until = expiry_timestamp(refresh_expiry, config.JWT_REFRESH_TOKEN_EXPIRES, now, self._max_lifetime)
        return PairPlan(
            uid=uid,
            session_id=session_id,
            fresh=fresh,
            data=dict(data) if data else None,
            access_expiry=access_expiry,
            refresh_expiry=refresh_expiry,
            scopes=scopes,
            expires_at=max(access_until, refresh_until),
        )

    def mint(self, plan: PairPlan, stamps: Stamps) -> SessionTokens:
        """Mint the pair with ``stamps`` (which carry the session's generation)."""
        data = dict(plan.data or {})
        data[self._names.session_id] = plan.session_id
        data = stamp_claims(data, stamps, self._names)
        return SessionTokens(
            access_token=self._mint_access(
                uid=plan.uid, fresh=plan.fresh, expiry=plan.access_expiry, data=data, scopes=plan.scopes
            ),
            refresh_token=self._mint_refresh(uid=plan.uid, expiry=plan.refresh_expiry, data=data, scopes=plan.scopes),
            session_id=plan.session_id,
        )

    def access_expiry(self, now: float) -> float:
        """When an access token minted now with AuthX's configured lifetime expires."""
        return expiry_timestamp(None, self.auth.config.JWT_ACCESS_TOKEN_EXPIRES, now, self._max_lifetime)

    def renew(self, payload: TokenPayload, stamps: Stamps) -> str:
        """The same access token with a later expiry: its jti, session, scopes and application claims.

        It is the implicit refresh's re-mint. Keeping the jti makes a renewal the same credential:
        revoking any of them (``revoke_token``) revokes every renewal minted before.
        """
        extra = payload.model_extra or {}
        data = {key: value for key, value in extra.items() if key not in AUTHX_CLAIMS}
        data["jti"] = payload.jti
        return self._mint_access(
            uid=payload.sub, fresh=False, data=stamp_claims(data, stamps, self._names), scopes=payload.scopes
        )

    def verify_refresh(self, token: str) -> TokenPayload:
        """Verify a refresh token exactly as AuthX verifies one presented to a route.

        Raises:
            authx.exceptions.JWTDecodeError: Bad signature, expired, or not a JWT.
            authx.exceptions.TokenTypeError: Not a refresh token.
        """
        request_token = RequestToken(token=token, location="headers", type="refresh")
        return self._verify(request_token, verify_type=True, verify_fresh=False, verify_csrf=False)

    def verify(self, token: RequestToken, **options: bool) -> TokenPayload:
        """AuthX's own ``verify_token``, without the revocation check ``install()`` adds to it."""
        return self._verify(token, **options)

    def carried_data(self, payload: TokenPayload) -> dict[str, Any]:
        """The application's own claims of a refresh token, to carry into the next pair (not the stamps)."""
        extra = payload.model_extra or {}
        return {key: value for key, value in extra.items() if key not in AUTHX_CLAIMS and key not in self._stamp_claims}


class _Rotator(Protocol):
    async def rotate_refresh_token(self, refresh_token: str) -> SessionTokens: ...


def rotation_dependency(rotator: _Rotator, auth: AuthX[Any]) -> Callable[..., Coroutine[Any, Any, SessionTokens]]:
    """Build ``EpochRevocation.rotated_tokens`` for ``auth`` (see there)."""
    # AuthX's own dependency does the reading, the verification (CSRF included), the revocation check
    # and the OpenAPI security scheme; REFRESH_TOKEN hands over the raw token it read (FastAPI reads
    # the request once for both).
    verified = Depends(auth.refresh_token_required)

    async def rotated_tokens(
        response: Response, payload: TokenPayload = verified, presented: Optional[RequestToken] = auth.REFRESH_TOKEN
    ) -> SessionTokens:
        if presented is None:  # refresh_token_required found it, so this cannot happen
            raise MissingTokenError("no refresh token in the request", login_type=auth.login_type)
        pair = await rotator.rotate_refresh_token(presented.token)
        if presented.location == "cookies":
            auth.set_access_cookies(pair.access_token, response)
            auth.set_refresh_cookies(pair.refresh_token, response)
        return pair

    return rotated_tokens


def session_dependency(auth: AuthX[Any], names: ClaimNames) -> Callable[..., Coroutine[Any, Any, str]]:
    """Build ``EpochRevocation.current_session`` for ``auth`` (see there)."""
    verified = Depends(auth.access_token_required)

    async def current_session(payload: TokenPayload = verified) -> str:
        session_id = session_id_of((payload.model_extra or {}).get(names.session_id))
        if session_id is None:
            raise MissingTokenError(
                "this token belongs to no session: log in with create_token_pair to get one",
                login_type=auth.login_type,
            )
        return session_id

    return current_session


__all__ = [
    "DEFAULT_REFRESH_REUSE_GRACE",
    "AuthxMinter",
    "PairPlan",
    "SessionTokens",
    "expiry_timestamp",
    "rotation_dependency",
    "session_dependency",
]

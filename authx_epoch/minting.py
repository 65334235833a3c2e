"""Minting under a request's authority, and the session plumbing of the token-pair methods and of AuthX.

``MintRules`` judges the stamps a new token may carry (``authority.judge_mint`` under the running
request's scope) and turns a session's mint or rotation into plans, outcomes and AuthX's errors.
Pure decisions only: the service's twins make the store calls around them. The exception is
``renew_cookie``, the implicit refresh's renewal of an access cookie, which has no twin (AuthX's
middleware is async) and so reads the store itself; ``AuthxHooks`` hands it to ``install()`` with
the rest of what ``install()`` needs from a service besides its public methods.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import time
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, replace
from typing import Any, Optional

from authx import AuthX
from authx.exceptions import RevokedTokenError
from authx.schema import TokenPayload

from authx_epoch import authority, validation
from authx_epoch.authority import Authority, MintVerdict, judge_mint
from authx_epoch.checking import Checker
from authx_epoch.claims import ClaimNames, TokenClaims, claims_from_mapping
from authx_epoch.decision import Decision, Policy, Reason, decide
from authx_epoch.errors import ConfigurationError, InvalidArgumentError, RefreshTokenReusedError, StoreUnavailableError
from authx_epoch.records import CheckState, RotationOutcome, RotationStatus, Stamps
from authx_epoch.sessions import DEFAULT_REFRESH_REUSE_GRACE, AuthxMinter, PairPlan
from authx_epoch.validation import shorten

logger = logging.getLogger("authx_epoch")


class MintRules:
    """The rules of one service's mints and sessions, shared by the async service and its sync twin."""

    def __init__(
        self,
        auth: Optional[AuthX[Any]],
        names: ClaimNames,
        policy: Policy,
        max_lifetime: float,
        refresh_reuse_grace: dt.timedelta = DEFAULT_REFRESH_REUSE_GRACE,
    ) -> None:
        """Bind to ``auth`` (``None``: the session methods say how to get one) and the check's policy."""
        self.names = names
        self.policy = policy
        self.grace = validation.seconds(refresh_reuse_grace, "refresh_reuse_grace")
        self.minter = AuthxMinter(auth, names, max_lifetime) if auth is not None else None
        self.login_type = auth.login_type if auth is not None else None

    # -- mints under a request's authority ---------------------------------------------------

    def vet(self, uid: str, stamps: Stamps, session_id: Optional[str], *presented: Authority) -> MintVerdict:
        """Judge a mint of ``uid`` whose store call answered ``stamps``, under the request's authorities.

        ``presented`` are authorities the caller holds itself (the refresh token of a rotation);
        the running request's scope adds the tokens its AuthX checks accepted and its own moves.
        """
        scope = authority.current_scope()
        if scope is None:
            return judge_mint(presented, uid, stamps, session_id)
        return judge_mint(
            (*presented, *scope.authorities),
            uid,
            stamps,
            session_id,
            moved_users=scope.moved_users,
            moved_global=scope.moved_global,
        )

    def refused(self, verdict: MintVerdict) -> tuple[TokenClaims, ...]:
        """Raise the error a refused verdict means; else return the tokens to decide again."""
        if verdict.refused is not None:
            raise self.mint_refused(verdict.refused)
        return verdict.recheck

    def mint_refused(self, why: str) -> RevokedTokenError:
        """The error for a mint refused because the presented token was revoked while the request ran."""
        logger.warning("mint refused: %s", why)
        return RevokedTokenError("Token has been revoked", login_type=self.login_type)

    def still_accepted(self, claims: TokenClaims, state: CheckState, now: float) -> None:
        """Raise ``mint_refused`` if a presented token is rejected by the state read after the mint's store call."""
        if not decide(claims, state, now, self.policy).accepted:
            raise self.mint_refused("the presented token was revoked while the request ran")

    # -- sessions ----------------------------------------------------------------------------

    def authx(self, method: str) -> AuthxMinter:
        """The AuthX binding the session helpers need, or a ``ConfigurationError`` saying how to get one."""
        if self.minter is None:
            raise ConfigurationError(
                f"{method} needs the AuthX instance: use authx_epoch.install(auth, ...), or pass "
                "EpochRevocation(store, auth=auth)"
            )
        return self.minter

    def pair_plan(
        self,
        minter: AuthxMinter,
        uid: str,
        session_id: str,
        *,
        fresh: bool,
        data: Optional[Mapping[str, Any]],
        access_expiry: Any,
        refresh_expiry: Any,
        scopes: Optional[list[str]],
    ) -> PairPlan:
        """Validate the arguments of a pair and describe it."""
        if data is not None and not isinstance(data, Mapping):
            raise InvalidArgumentError(f"data must be a mapping, got {type(data).__name__}")
        if scopes is not None and (not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes)):
            raise InvalidArgumentError("scopes must be a list of strings")
        return minter.plan(
            validation.uid(uid),
            validation.session_id(session_id),
            fresh=bool(fresh),
            data=data,
            access_expiry=access_expiry,
            refresh_expiry=refresh_expiry,
            scopes=scopes,
        )

    def rotation_plan(self, minter: AuthxMinter, refresh_token: object) -> tuple[PairPlan, int]:
        """Verify a refresh token like AuthX does and describe the pair that replaces it.

        Returns the plan and the session generation the token carries.

        Raises:
            authx.exceptions.JWTDecodeError: Bad signature, expired, or not a JWT (AuthX's answer: 422).
            authx.exceptions.TokenTypeError: Not a refresh token.
            authx.exceptions.RevokedTokenError: The token belongs to no rotating session.
        """
        if not isinstance(refresh_token, str):
            raise InvalidArgumentError(f"refresh_token must be a string, got {type(refresh_token).__name__}")
        payload = minter.verify_refresh(refresh_token)
        claims = claims_from_mapping(payload.model_dump(), self.names)
        if claims is None or claims.session_id is None or claims.session_generation is None:
            raise RevokedTokenError(
                "this refresh token was not minted by create_token_pair, so it cannot be rotated; log in again",
                login_type=minter.auth.login_type,
            )
        plan = minter.plan(
            claims.sub,
            claims.session_id,
            fresh=False,
            data=minter.carried_data(payload),
            access_expiry=None,
            refresh_expiry=None,
            scopes=payload.scopes,
        )
        return plan, claims.session_generation

    def rotated(self, minter: AuthxMinter, plan: PairPlan, outcome: RotationOutcome) -> None:
        """Raise the error a rotation outcome means, if it is not a go-ahead."""
        status = outcome.status
        if status is RotationStatus.ROTATED or status is RotationStatus.GRACE:
            return
        login_type = minter.auth.login_type
        if status is RotationStatus.REUSED:
            logger.warning(
                "refresh token reused after rotation; session revoked: uid=%r session=%r",
                shorten(plan.uid),
                shorten(plan.session_id, 16),
            )
            raise RefreshTokenReusedError(
                "this refresh token was already used; the session is revoked, log in again", login_type=login_type
            )
        raise RevokedTokenError(f"Token has been revoked ({status.value} session)", login_type=login_type)

    def after_rotation(self, minter: AuthxMinter, stamps: Stamps, outcome: RotationOutcome) -> Stamps:
        """The stamps of a rotated pair: those read before the rotation, with the session's current generation."""
        if outcome.session is None:
            raise self.revoked_refresh(minter)
        return replace(stamps, session_generation=outcome.session.generation)

    def presented(
        self, minter: AuthxMinter, decision: Decision, claims: Optional[TokenClaims], state: Optional[CheckState]
    ) -> Authority:
        """The authority of a refresh token presented for rotation, or the error if the check refuses it."""
        if not decision.accepted:
            raise self.revoked_refresh(minter)
        if claims is None or state is None or decision.reason is not Reason.ACCEPTED:
            # Accepted without a store read (fail_open during an outage): nothing to rotate against.
            raise StoreUnavailableError("the revocation store cannot be read, so no refresh token can be rotated")
        return Authority.of(claims, state)

    def revoked_refresh(self, minter: AuthxMinter) -> RevokedTokenError:
        """The error for a refresh token the check rejects (revoked, or its state lost)."""
        return RevokedTokenError("Token has been revoked", login_type=minter.auth.login_type)


async def renew_cookie(core: Checker, mint: MintRules, token: str, payload: TokenPayload) -> Optional[str]:
    """The implicit refresh's renewal of an access cookie, or ``None`` when it must not be renewed.

    ``payload`` is AuthX's verification of ``token``; ``core`` and ``mint`` are the service's. The
    cookie is checked, the store's epochs are read where the renewal is minted (which also keeps
    every record it needs alive for the renewal's life), and they must still be the ones the
    cookie was accepted under: a bump or a revocation that lands in between leaves the cookie
    unrenewed. The renewal keeps the cookie's jti, session, stamps, scopes and application claims.
    """
    minter = mint.authx("the implicit refresh")
    decision, claims, state = await core.evaluate(token)
    if claims is None or state is None or decision.reason is not Reason.ACCEPTED:
        return None
    now = core.clock()
    until = minter.access_expiry(time.time()) + core.leeway
    stamps = await core.aio.issue(claims.sub, now, until, claims.session_id)
    # The cookie alone is the authority: what the request's own handler moved (a logout
    # everywhere through this very cookie) must not let the cookie live on.
    verdict = judge_mint((Authority.of(claims, state),), claims.sub, stamps, claims.session_id)
    if verdict.refused is not None:
        logger.info("implicit refresh refused: uid=%r: %s", shorten(claims.sub), verdict.refused)
        return None
    for unstamped in verdict.recheck:
        fresh = await core.aio.fetch(unstamped.sub, unstamped.jti, unstamped.session_id, now)
        if not decide(unstamped, fresh, now, core.policy).accepted:
            return None
    return minter.renew(payload, verdict.stamps)


@dataclass(frozen=True)
class AuthxHooks:
    """What ``install()`` needs from a service besides its public methods (not part of the public API).

    Attributes:
        minter: Mints and verifies through AuthX's own methods, as they were before ``install()``
            wrapped them.
        reads_inline: Whether the store answers without waiting (a local store), so the blocklist
            callback can be a plain function.
        max_lifetime: The lifetime, in seconds, assumed for a token minted without an expiry.
        renew: The implicit refresh's renewal of an access cookie (token, AuthX's payload of it):
            the renewed token, or ``None`` when it must not be renewed.
    """

    minter: AuthxMinter
    reads_inline: bool
    max_lifetime: float
    renew: Callable[[str, TokenPayload], Coroutine[Any, Any, Optional[str]]]

    @classmethod
    def of(cls, core: Checker, mint: MintRules) -> AuthxHooks:
        """The hooks of the service whose check is ``core`` and whose mint rules are ``mint``.

        Raises:
            ConfigurationError: The service was built without the AuthX instance.
        """
        return cls(
            minter=mint.authx("the implicit refresh"),
            reads_inline=core.reads_inline,
            max_lifetime=core.max_lifetime,
            renew=functools.partial(renew_cookie, core, mint),
        )


__all__ = ["AuthxHooks", "MintRules", "renew_cookie"]

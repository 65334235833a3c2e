"""The check: read a token, fetch its state, decide, report; and how long revocations are kept.

``Checker`` holds the settings of one service and runs the check pipeline for both twins: the
blocking read (``evaluate_inline``) and the async one (``evaluate``) share every step but the
store call. The expiry arithmetic (how long a bump, a session revocation or a token revocation is
kept) lives here too, since it follows from the same settings as the decision.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Optional, Protocol, Union

from authx import AuthX
from authx.schema import TokenPayload

from authx_epoch import authority, validation
from authx_epoch.authority import Authority
from authx_epoch.claims import ClaimNames, ClaimReader, TokenClaims, claims_from_mapping, decode_payload_segment
from authx_epoch.decision import NOT_OURS, Decision, Policy, Reason, decide
from authx_epoch.errors import InvalidArgumentError, InvalidTokenError, StoreUnavailableError
from authx_epoch.records import CheckState, unix_time
from authx_epoch.stores import Store
from authx_epoch.validation import shorten

logger = logging.getLogger("authx_epoch")

#: Returns the current time in Unix seconds; injectable so tests never sleep.
Clock = Callable[[], float]


def wall_clock() -> float:
    """The default clock: ``time.time()``, looked up at every call.

    Not ``time.time`` itself: a default bound at import would escape the tools that move time in
    an application's tests (freezegun patches the module attribute), so tokens minted in frozen
    time would be judged in real time.
    """
    return time.time()


class Verifier(Protocol):
    """Verifies a token's signature (and, unless told otherwise, its expiry) the way AuthX does."""

    def __call__(self, token: str, *, verify_exp: bool = True) -> Optional[Mapping[str, Any]]:
        """Return the verified payload, or ``None`` if the token does not verify."""
        ...


@dataclass(frozen=True)
class DecisionEvent:
    """What an ``on_decision`` hook receives for every check.

    Attributes:
        decision: The decision and its reason.
        uid: The token's subject, or ``None`` if the token could not be read.
        jti: The token's id, if any (an id, not the token: it authenticates nothing).
        session_id: The token's session id, if any.
        duration: Seconds the check took.
    """

    decision: Decision
    uid: Optional[str]
    jti: Optional[str]
    session_id: Optional[str]
    duration: float


DecisionHook = Callable[[DecisionEvent], None]

#: A store's blocking read for one check: ``(uid, jti, session_id, now) -> CheckState``.
Fetch = Callable[[str, Optional[str], Optional[str], float], CheckState]

#: What one check found: the decision, and the claims and store state it was made from (``None``
#: when the token was not read, or the store could not be).
Evaluation = tuple[Decision, Optional[TokenClaims], Optional[CheckState]]


class Checker:
    """One service's settings and its check, shared by the async service and its sync twin."""

    def __init__(
        self,
        store: Store,
        *,
        claims: ClaimNames,
        clock: Clock,
        fail_open: bool,
        accept_unstamped_until: Optional[dt.datetime],
        revocation_leeway: dt.timedelta,
        max_token_lifetime: dt.timedelta,
        session_lifetime: dt.timedelta,
        verifier: Optional[Verifier],
        on_decision: Optional[DecisionHook],
        auth: Optional[AuthX[Any]] = None,
    ) -> None:
        """Validate and keep the settings; ``auth`` tells how long a renewed access cookie lives."""
        self.store = store
        self.aio = store.aio
        self.sync = store.sync
        self.names = claims
        self.reader = ClaimReader(names=claims)
        self.clock = clock
        self.fail_open = fail_open
        self.leeway = validation.seconds(revocation_leeway, "revocation_leeway")
        self.max_lifetime = validation.seconds(max_token_lifetime, "max_token_lifetime")
        self.session_lifetime = validation.seconds(session_lifetime, "session_lifetime")
        deadline = None
        if accept_unstamped_until is not None:
            deadline = validation.timestamp(accept_unstamped_until, "accept_unstamped_until")
        self.policy = Policy(accept_unstamped_until=deadline, max_token_lifetime=self.max_lifetime)
        self.verifier = verifier
        self.on_decision = on_decision
        #: How long a cookie the implicit refresh renews lives: a revoked access token's entry is
        #: kept at least that long, so the renewals minted from it before the revocation die with it
        #: (they keep its jti). ``None`` when the app's tokens are not read from cookies.
        self.renewal_lifetime: Optional[float] = None
        if auth is not None and auth.config.has_location("cookies"):
            lifetime = auth.config.JWT_ACCESS_TOKEN_EXPIRES
            seconds = lifetime.total_seconds() if isinstance(lifetime, dt.timedelta) else self.max_lifetime
            self.renewal_lifetime = seconds
        #: A local store reads without waiting (see ``Store.reads_inline``), so the async check
        #: can call the sync read directly and skip two coroutine layers per request.
        self.reads_inline = store.reads_inline
        #: Whether this process has set the store up (created the global record); install() tries
        #: at start, and a store that was down then is set up at its first use instead.
        self.set_up = False

    # -- the check -------------------------------------------------------------------------

    def check_inline(self, token: str, fetch: Fetch, *, grant: bool = False) -> Decision:
        """The whole check with a store read that does not wait on the network.

        It is the hot path of every request, so it does no work for the ``on_decision`` hook
        when none is set. With ``grant``, an accepted token becomes an authority of the running
        request (see ``authority``): what AuthX's own entry points do, not ``check()``.
        """
        decision, claims, state = self.evaluate_inline(token, fetch)
        if grant and claims is not None and state is not None and decision.reason is Reason.ACCEPTED:
            authority.grant(Authority.of(claims, state))
        return decision

    def evaluate_inline(self, token: str, fetch: Fetch) -> Evaluation:
        """``check_inline``, also returning the claims and the store state the decision was made from."""
        hook = self.on_decision
        started = time.perf_counter() if hook is not None else 0.0
        read = self.read(token)
        if read is None:
            if hook is not None:
                self.report(None, NOT_OURS, started)
            return NOT_OURS, None, None
        claims, verified = read
        now = self.clock()
        state: Optional[CheckState] = None
        try:
            state = fetch(claims.sub, claims.jti, claims.session_id, now)
            if state.global_ is None and self.sets_up_late:
                # Never set up (the store was down when the app started): do it now, once. Only
                # a migration window needs it (its decision reads when the store was set up).
                self.setup_sync(now)
                state = fetch(claims.sub, claims.jti, claims.session_id, now)
        except StoreUnavailableError as exc:
            decision = self.store_failed(token, claims, verified, exc, started)
        else:
            decision = self.conclude(token, claims, verified, state, now)
        if hook is not None:
            self.report(claims, decision, started)
        return decision, claims, state

    @property
    def sets_up_late(self) -> bool:
        """Whether a check must set the store up first: never done, and a migration window is open."""
        return not self.set_up and self.policy.accept_unstamped_until is not None

    def setup_sync(self, now: float) -> None:
        """Set the store up (create the global record if missing) and remember it."""
        self.sync.setup(now)
        self.set_up = True

    def read(self, token: object) -> Optional[tuple[TokenClaims, bool]]:
        """Return the claims to judge and whether they come from a verified token, or ``None``."""
        claims = self.reader.read(token)  # type: ignore[arg-type]
        if claims is not None:
            return claims, False
        if not isinstance(token, str) or self.verifier is None:
            return None
        # Not readable cheaply (too long, or unusual encoding): read it the expensive way, after
        # verifying it, so that no token AuthX would accept escapes the check.
        payload = self.verifier(token)
        if payload is None:
            return None
        verified = claims_from_mapping(payload, self.names)
        return (verified, True) if verified is not None else None

    def signature_holds(self, token: str, verified: bool) -> bool:
        """Whether a token about to be rejected really is one AuthX would otherwise accept.

        A forged or expired token is left to AuthX, so the HTTP answer is exactly AuthX's own.
        """
        return verified or self.verifier is None or self.verifier(token) is not None

    def conclude(self, token: str, claims: TokenClaims, verified: bool, state: CheckState, now: float) -> Decision:
        """Turn fetched state into the decision for this token."""
        decision = decide(claims, state, now, self.policy)
        if not decision.accepted:
            if not self.signature_holds(token, verified):
                return NOT_OURS
            if logger.isEnabledFor(logging.INFO):
                logger.info(
                    "token rejected: uid=%r reason=%s jti=%s", shorten(claims.sub), decision.reason.value, claims.jti
                )
        return decision

    def store_failed(
        self, token: str, claims: TokenClaims, verified: bool, exc: StoreUnavailableError, started: float = 0.0
    ) -> Decision:
        """Decide what a store failure means: a 503 (fail-closed) or a logged pass (fail-open)."""
        if not self.signature_holds(token, verified):
            return NOT_OURS
        if self.fail_open:
            logger.warning(
                "revocation store unavailable; token of uid=%r let through unchecked (fail_open=True): %s",
                shorten(claims.sub),
                exc,
            )
            return Decision(True, Reason.FAIL_OPEN)
        logger.error("revocation store unavailable; request refused with 503: %s", exc)
        if self.on_decision is not None:
            # The 503 is a decision too: metrics must see outages, not only the checks that passed.
            self.report(claims, Decision(False, Reason.STORE_UNAVAILABLE), started)
        raise exc

    def unexpected(self, exc: Exception) -> StoreUnavailableError:
        """Map a bug or an unknown driver error to the documented 503 instead of a 500."""
        logger.exception("revocation check failed unexpectedly; treating it as store trouble")
        return StoreUnavailableError("the revocation check failed unexpectedly")

    def report(self, claims: Optional[TokenClaims], decision: Decision, started: float) -> None:
        """Hand the decision to the ``on_decision`` hook, if one is set; a failing hook is logged, never raised."""
        hook = self.on_decision
        if hook is None:
            return
        event = DecisionEvent(
            decision=decision,
            uid=claims.sub if claims else None,
            jti=claims.jti if claims else None,
            session_id=claims.session_id if claims else None,
            duration=time.perf_counter() - started,
        )
        try:
            hook(event)
        except Exception:
            logger.exception("on_decision hook raised; the decision stands")

    # -- expiry arithmetic -----------------------------------------------------------------

    def bump_expiry(self, now: float) -> float:
        """How long a bumped user record must be kept: as long as any token it revokes may live."""
        return now + self.max_lifetime + self.leeway

    def session_expiry(self, now: float, expires_at: Union[dt.datetime, float, int, None]) -> float:
        """When a session revocation may be forgotten."""
        if expires_at is None:
            return now + self.session_lifetime + self.leeway
        return validation.timestamp(expires_at, "expires_at") + self.leeway

    def token_expiry(self, exp: Optional[float], iat: Optional[float], now: float) -> float:
        """When a token (and so its revocation entry) stops mattering."""
        if exp is not None:
            return exp + self.leeway
        # A token without exp is refused max_token_lifetime after iat (see decide()).
        return (iat if iat is not None else now) + self.max_lifetime + self.leeway

    def revocation_target(self, token: object, now: float) -> Optional[tuple[str, str, float]]:
        """Return ``(uid, jti, expires_at)`` to revoke, or ``None`` if the token has already expired."""
        if isinstance(token, TokenPayload):
            payload: Mapping[str, Any] = token.model_dump()
        elif isinstance(token, str):
            read = (
                self.verifier(token, verify_exp=False) if self.verifier is not None else decode_payload_segment(token)
            )
            if read is None:
                raise InvalidTokenError(
                    "the token does not decode or its signature does not verify; nothing was revoked"
                )
            payload = read
        else:
            raise InvalidArgumentError(
                f"revoke_token takes a token string or an AuthX TokenPayload, got {type(token).__name__}"
            )
        jti, uid = payload.get("jti"), payload.get("sub")
        if not isinstance(uid, str):
            raise InvalidTokenError("the token has no string sub; it is not a token this library stamps")
        if not isinstance(jti, str) or not jti:
            raise InvalidTokenError("the token has no jti, so it cannot be revoked alone; use bump_user_epoch instead")
        for value, name in ((uid, "sub"), (jti, "jti")):
            if len(value) > validation.MAX_ID_LENGTH:
                # Only the app's own minting can sign such a token; no store keeps an id that long.
                raise InvalidTokenError(
                    f"the token's {name} is longer than {validation.MAX_ID_LENGTH} characters; nothing was "
                    "revoked (use bump_user_epoch to revoke its user's tokens)"
                )
            try:
                validation.require_unicode(value, name)
            except InvalidArgumentError as exc:
                raise InvalidTokenError(f"the token's {exc}; nothing was revoked") from None
        expires_at = self.token_expiry(unix_time(payload.get("exp")), unix_time(payload.get("iat")), now)
        if expires_at <= now:
            return None
        if self.renewal_lifetime is not None and payload.get("type", "access") == "access":
            # The implicit refresh renews a cookie under the same jti: a renewal minted before
            # this call expires within one access lifetime from now, and must die with it.
            expires_at = max(expires_at, now + self.renewal_lifetime + self.leeway)
        return uid, jti, expires_at

    async def evaluate(self, token: str) -> Evaluation:
        """``evaluate_inline`` through the store's async side (inline for a local store)."""
        if self.reads_inline:
            return self.evaluate_inline(token, self.sync.fetch)
        hook = self.on_decision
        started = time.perf_counter() if hook is not None else 0.0
        read = self.read(token)
        if read is None:
            if hook is not None:
                self.report(None, NOT_OURS, started)
            return NOT_OURS, None, None
        claims, verified = read
        now = self.clock()
        state: Optional[CheckState] = None
        try:
            state = await self.aio.fetch(claims.sub, claims.jti, claims.session_id, now)
            if state.global_ is None and self.sets_up_late:
                await self.aio.setup(now)
                self.set_up = True
                state = await self.aio.fetch(claims.sub, claims.jti, claims.session_id, now)
        except StoreUnavailableError as exc:
            decision = self.store_failed(token, claims, verified, exc, started)
        else:
            decision = self.conclude(token, claims, verified, state, now)
        if hook is not None:
            self.report(claims, decision, started)
        return decision, claims, state


__all__ = ["Checker", "Clock", "DecisionEvent", "DecisionHook", "Evaluation", "Fetch", "Verifier", "wall_clock"]

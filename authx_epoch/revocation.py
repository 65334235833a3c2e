"""The revocation service: bump, revoke, check and stamp, async-first with a sync twin.

Every decision is made once, in ``_Core`` (pure code, no I/O). ``EpochRevocation`` (async) and
``SyncEpochRevocation`` (its twin, reached as ``revocation.sync``) only fetch from and write to
the store, so the two can never drift apart.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import logging
import time
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, replace
from typing import Any, Optional, ParamSpec, Protocol, TypeVar, Union

import anyio.from_thread
from authx import AuthX
from authx.exceptions import RevokedTokenError
from authx.schema import TokenPayload
from fastapi import Request

from authx_epoch import authority
from authx_epoch.authority import Authority, MintVerdict, judge_mint
from authx_epoch.claims import ClaimNames, ClaimReader, TokenClaims, claims_from_mapping, decode_payload_segment
from authx_epoch.decision import NOT_OURS, Decision, Policy, Reason, decide
from authx_epoch.errors import (
    ConfigurationError,
    InvalidArgumentError,
    InvalidTokenError,
    MissingAwaitError,
    RefreshTokenReusedError,
    StoreUnavailableError,
)
from authx_epoch.records import (
    CheckState,
    EpochRecord,
    RotationOutcome,
    RotationStatus,
    SessionRecord,
    Stamps,
    StoreStats,
    unix_time,
)
from authx_epoch.sessions import (
    DEFAULT_REFRESH_REUSE_GRACE,
    AuthxMinter,
    PairPlan,
    SessionTokens,
    rotation_dependency,
    session_dependency,
)
from authx_epoch.stores import Store

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


#: The longest ``reason`` a bump keeps, in characters.
MAX_REASON_LENGTH = 500
#: The longest user id or session id accepted by the public methods, in characters.
MAX_ID_LENGTH = 16 * 1024


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


def _seconds(value: dt.timedelta, name: str) -> float:
    if not isinstance(value, dt.timedelta):
        raise InvalidArgumentError(f"{name} must be a datetime.timedelta, got {type(value).__name__}")
    seconds = value.total_seconds()
    if seconds < 0:
        raise InvalidArgumentError(f"{name} must not be negative, got {value}")
    return seconds


def _timestamp(value: Union[dt.datetime, float, int], name: str) -> float:
    if isinstance(value, dt.datetime) and value.tzinfo is None:
        raise InvalidArgumentError(f"{name} must be timezone-aware (e.g. datetime.now(timezone.utc))")
    seconds = unix_time(value)
    if seconds is None:
        raise InvalidArgumentError(f"{name} must be an aware datetime or Unix seconds, got {type(value).__name__}")
    return seconds


def _require_unicode(text: str, name: str) -> None:
    # JSON lets a token carry a lone surrogate ("\ud800"); no store can key on it uniformly.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidArgumentError(f"{name} holds a lone surrogate, which is not valid Unicode text") from None


def _in_a_worker_thread() -> bool:
    """Whether this thread runs no event loop but serves one: a ``def`` endpoint or dependency of an ASGI app."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        return False
    try:
        anyio.from_thread.check_cancelled()
    except RuntimeError:
        return False  # a plain thread: it may well run the coroutine itself (asyncio.run)
    return True


_P = ParamSpec("_P")
_R = TypeVar("_R")


def _awaited(method: Callable[_P, Coroutine[Any, Any, _R]]) -> Callable[_P, Coroutine[Any, Any, _R]]:
    """Make a coroutine method fail at the call where nothing could ever await it.

    In a ``def`` endpoint (a worker thread of the app's event loop), ``revocation.revoke_token(p)``
    without ``await`` would return a coroutine that never runs: the revocation would silently not
    happen. There the call raises at once, naming the blocking twin to use instead.
    """

    @functools.wraps(method)
    def call(*args: _P.args, **kwargs: _P.kwargs) -> Coroutine[Any, Any, _R]:
        if _in_a_worker_thread():
            name = method.__name__
            raise MissingAwaitError(
                f"revocation.{name}() is a coroutine, and this is a worker thread of the event loop (a `def` "
                f"endpoint or dependency): nothing would await it and it would never run. Call "
                f"revocation.sync.{name}(...) here, or make the endpoint `async def` and await it"
            )
        return method(*args, **kwargs)

    return call


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


class _Core:
    """Settings and every decision, shared by the async service and its sync twin."""

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
        refresh_reuse_grace: dt.timedelta = DEFAULT_REFRESH_REUSE_GRACE,
    ) -> None:
        self.store = store
        self.aio = store.aio
        self.sync = store.sync
        self.names = claims
        self.reader = ClaimReader(names=claims)
        self.clock = clock
        self.fail_open = fail_open
        self.leeway = _seconds(revocation_leeway, "revocation_leeway")
        self.max_lifetime = _seconds(max_token_lifetime, "max_token_lifetime")
        self.session_lifetime = _seconds(session_lifetime, "session_lifetime")
        deadline = None
        if accept_unstamped_until is not None:
            deadline = _timestamp(accept_unstamped_until, "accept_unstamped_until")
        self.policy = Policy(accept_unstamped_until=deadline, max_token_lifetime=self.max_lifetime)
        self.verifier = verifier
        self.on_decision = on_decision
        self.grace = _seconds(refresh_reuse_grace, "refresh_reuse_grace")
        self.minter = AuthxMinter(auth, claims, self.max_lifetime) if auth is not None else None
        self.login_type = auth.login_type if auth is not None else None
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
                    "token rejected: uid=%r reason=%s jti=%s", _short(claims.sub), decision.reason.value, claims.jti
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
                _short(claims.sub),
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

    # -- arguments of the public methods ---------------------------------------------------

    def uid(self, uid: object) -> str:
        """Validate a user id given to a public method."""
        if not isinstance(uid, str):
            raise InvalidArgumentError(f"uid must be a string, got {type(uid).__name__}")
        if len(uid) > MAX_ID_LENGTH:
            raise InvalidArgumentError(f"uid is longer than {MAX_ID_LENGTH} characters")
        _require_unicode(uid, "uid")
        return uid

    def reason(self, reason: object) -> Optional[str]:
        """Validate a bump's reason."""
        if reason is None:
            return None
        if not isinstance(reason, str):
            raise InvalidArgumentError(f"reason must be a string, got {type(reason).__name__}")
        if len(reason) > MAX_REASON_LENGTH:
            raise InvalidArgumentError(f"reason is longer than {MAX_REASON_LENGTH} characters")
        return reason

    def session_id(self, session_id: object) -> str:
        """Validate a session id given to a public method."""
        if not isinstance(session_id, str) or not session_id:
            raise InvalidArgumentError(f"session_id must be a non-empty string, got {session_id!r:.40}")
        if len(session_id) > MAX_ID_LENGTH:
            raise InvalidArgumentError(f"session_id is longer than {MAX_ID_LENGTH} characters")
        _require_unicode(session_id, "session_id")
        return session_id

    def bump_expiry(self, now: float) -> float:
        """How long a bumped user record must be kept: as long as any token it revokes may live."""
        return now + self.max_lifetime + self.leeway

    def session_expiry(self, now: float, expires_at: Union[dt.datetime, float, int, None]) -> float:
        """When a session revocation may be forgotten."""
        if expires_at is None:
            return now + self.session_lifetime + self.leeway
        return _timestamp(expires_at, "expires_at") + self.leeway

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
            try:
                _require_unicode(value, name)
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
            self.uid(uid),
            self.session_id(session_id),
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
                _short(plan.uid),
                _short(plan.session_id, 16),
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


class SyncEpochRevocation:
    """The blocking twin of ``EpochRevocation``: the same methods, for scripts and sync code.

    Reach it as ``revocation.sync``; it shares the store and every setting with its async twin.
    """

    def __init__(self, core: _Core) -> None:
        """Wrap the shared core; use ``revocation.sync`` rather than building one."""
        self._core = core

    def check(self, token: str) -> Decision:
        """Decide whether ``token`` is accepted now, and why. See ``EpochRevocation.check``."""
        core = self._core
        return core.check_inline(token, core.sync.fetch)

    def is_token_revoked(self, token: str) -> bool:
        """Return ``True`` if ``token`` must be refused. See ``EpochRevocation.is_token_revoked``."""
        core = self._core
        try:
            return not core.check_inline(token, core.sync.fetch, grant=True).accepted
        except StoreUnavailableError:
            raise
        except Exception as exc:
            raise core.unexpected(exc) from exc

    def bump_user_epoch(self, uid: str, *, reason: Optional[str] = None) -> EpochRecord:
        """Revoke every token of ``uid`` minted before this call. See ``EpochRevocation.bump_user_epoch``."""
        core = self._core
        uid, why, now = core.uid(uid), core.reason(reason), core.clock()
        record = core.sync.bump_user(uid, now, why, core.bump_expiry(now))
        authority.note_user_move(uid, record.epoch)
        logger.info("user epoch bumped: uid=%r reason=%r", _short(uid), why)
        return record

    def bump_global_epoch(self, *, reason: Optional[str] = None) -> EpochRecord:
        """Revoke every token of every user minted before this call."""
        core = self._core
        why = core.reason(reason)
        record = core.sync.bump_global(core.clock(), why)
        authority.note_global_move(record.epoch)
        logger.warning("global epoch bumped: reason=%r", why)
        return record

    def revoke_token(self, token: Union[str, TokenPayload]) -> None:
        """Revoke one token by its jti until it expires. See ``EpochRevocation.revoke_token``."""
        core = self._core
        now = core.clock()
        target = core.revocation_target(token, now)
        if target is not None:
            core.sync.revoke_token(*target, now)

    def revoke_session(
        self,
        session_id: str,
        *,
        expires_at: Union[dt.datetime, float, None] = None,
        uid: Optional[str] = None,
    ) -> bool:
        """Revoke every token of a session. See ``EpochRevocation.revoke_session``."""
        core = self._core
        sid, now = core.session_id(session_id), core.clock()
        owner = core.uid(uid) if uid is not None else None
        return core.sync.revoke_session(sid, core.session_expiry(now, expires_at), now, owner)

    def create_token_pair(
        self,
        uid: str,
        *,
        fresh: bool = False,
        data: Optional[Mapping[str, Any]] = None,
        request: Optional[Request] = None,
        device_info: Optional[dict[str, Any]] = None,
        access_expiry: Any = None,
        refresh_expiry: Any = None,
        scopes: Optional[list[str]] = None,
    ) -> SessionTokens:
        """Mint the access and refresh tokens of a new session. See ``EpochRevocation.create_token_pair``.

        AuthX's ``create_session`` is a coroutine: it is run to completion here, so this twin
        cannot be called from inside a running event loop (``await revocation.create_token_pair``
        there instead).
        """
        core = self._core
        minter = core.authx("create_token_pair")
        core.uid(uid)
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            raise ConfigurationError(
                "revocation.sync.create_token_pair cannot wait for AuthX's create_session inside a running "
                "event loop; use await revocation.create_token_pair(...)"
            )
        session = asyncio.run(minter.auth.create_session(uid, request=request, device_info=device_info))
        plan = core.pair_plan(
            minter,
            uid,
            session.session_id,
            fresh=fresh,
            data=data,
            access_expiry=access_expiry,
            refresh_expiry=refresh_expiry,
            scopes=scopes,
        )
        now = core.clock()
        stamps = core.sync.issue(plan.uid, now, plan.expires_at + core.leeway, plan.session_id)
        return minter.mint(plan, self._vetted(plan.uid, stamps, plan.session_id, now))

    def rotate_refresh_token(self, refresh_token: str) -> SessionTokens:
        """Trade a refresh token for the next pair of its session. See ``EpochRevocation.rotate_refresh_token``."""
        core = self._core
        minter = core.authx("rotate_refresh_token")
        plan, generation = core.rotation_plan(minter, refresh_token)
        decision, claims, state = core.evaluate_inline(refresh_token, core.sync.fetch)
        presented = core.presented(minter, decision, claims, state)
        now = core.clock()
        until = plan.expires_at + core.leeway
        # The stamps are read before the generation moves, so minting needs no store call after
        # it: an outage cannot strike in between and turn the client's retry into a "replay".
        # They are judged against the refresh token's: a bump that landed since its check means
        # the session was logged out, and nothing is rotated (see the async twin).
        stamps = core.sync.issue(plan.uid, now, until, plan.session_id)
        stamps = self._vetted(plan.uid, stamps, None, now, presented)
        outcome = core.sync.rotate_session(plan.session_id, plan.uid, generation, now, core.grace, until)
        core.rotated(minter, plan, outcome)
        return minter.mint(plan, core.after_rotation(minter, stamps, outcome))

    def get_session_record(self, session_id: str) -> Optional[SessionRecord]:
        """Return the session's record (generation, expiry, revoked flag), or ``None``."""
        core = self._core
        return core.sync.get_session(core.session_id(session_id), core.clock())

    def issue_stamps(self, uid: str, expires_at: float, session_id: Optional[str] = None) -> Stamps:
        """Return the epochs to stamp into a new token of ``uid`` expiring at ``expires_at``.

        With ``session_id``, the stamps also carry the generation of that session's record.
        """
        core = self._core
        sid = core.session_id(session_id) if session_id is not None else None
        uid, now = core.uid(uid), core.clock()
        return self._vetted(uid, core.sync.issue(uid, now, expires_at + core.leeway, sid), sid, now)

    def _vetted(self, uid: str, stamps: Stamps, session_id: Optional[str], now: float, *presented: Authority) -> Stamps:
        """The stamps a mint may write under the running request's authorities (see ``authority``)."""
        core = self._core
        verdict = core.vet(uid, stamps, session_id, *presented)
        for claims in core.refused(verdict):
            core.still_accepted(claims, core.sync.fetch(claims.sub, claims.jti, claims.session_id, now), now)
        return verdict.stamps

    def get_user_record(self, uid: str) -> Optional[EpochRecord]:
        """Return the user's record (epoch, when and why it last moved), or ``None``."""
        core = self._core
        return core.sync.get_user(core.uid(uid), core.clock())

    def get_global_record(self) -> Optional[EpochRecord]:
        """Return the global record, or ``None`` if the store has lost it."""
        return self._core.sync.get_global(self._core.clock())

    def stats(self) -> StoreStats:
        """Count what the store holds."""
        return self._core.sync.stats(self._core.clock())

    def ready(self) -> bool:
        """Whether the store answers now (set up, read back). See ``EpochRevocation.ready``."""
        core = self._core
        now = core.clock()
        try:
            if not core.set_up:
                core.setup_sync(now)
            return core.sync.get_global(now) is not None
        except StoreUnavailableError as exc:
            logger.warning("revocation store not ready: %s", exc)
            return False

    def close(self) -> None:
        """Release the store's blocking connections (the async side's: ``await revocation.aclose()``)."""
        self._core.sync.close()


class EpochRevocation:
    """Generation-counter revocation for AuthX tokens. ``install()`` returns one.

    Every method is a coroutine; ``revocation.sync`` has the same methods, blocking.
    """

    def __init__(
        self,
        store: Store,
        *,
        claims: Optional[ClaimNames] = None,
        clock: Clock = wall_clock,
        fail_open: bool = False,
        accept_unstamped_until: Optional[dt.datetime] = None,
        revocation_leeway: dt.timedelta = dt.timedelta(seconds=60),
        max_token_lifetime: dt.timedelta = dt.timedelta(days=30),
        session_lifetime: dt.timedelta = dt.timedelta(days=30),
        verifier: Optional[Verifier] = None,
        on_decision: Optional[DecisionHook] = None,
        auth: Optional[AuthX[Any]] = None,
        refresh_reuse_grace: dt.timedelta = DEFAULT_REFRESH_REUSE_GRACE,
    ) -> None:
        """Build the service over ``store``. Most applications call ``install()`` instead.

        Args:
            store: The backend (see ``authx_epoch.stores.open_store``).
            claims: The claim names to stamp and read.
            clock: Returns the current Unix time; inject one in tests instead of sleeping.
            fail_open: Let tokens through unchecked (logged) when the store is unreachable,
                instead of refusing them with a 503.
            accept_unstamped_until: End of the migration window for tokens minted before install.
            revocation_leeway: Added to a token's ``exp`` for how long its revocation is kept.
            max_token_lifetime: The lifetime assumed for tokens without ``exp`` (they are refused
                after it) and how long a bumped record is kept at least.
            session_lifetime: How long a session revocation is kept when no expiry is given.
            verifier: Verifies signatures like AuthX does; ``install()`` provides it. Without one,
                claims are trusted as read.
            on_decision: Called with a ``DecisionEvent`` after every check.
            auth: The AuthX instance that mints this service's tokens; ``create_token_pair`` and
                ``rotate_refresh_token`` need it (``install()`` passes it).
            refresh_reuse_grace: How long after a rotation the replaced refresh token is still
                answered with the session's current pair instead of being treated as reused.
        """
        self._core = _Core(
            store,
            claims=claims or ClaimNames(),
            clock=clock,
            fail_open=fail_open,
            accept_unstamped_until=accept_unstamped_until,
            revocation_leeway=revocation_leeway,
            max_token_lifetime=max_token_lifetime,
            session_lifetime=session_lifetime,
            verifier=verifier,
            on_decision=on_decision,
            auth=auth,
            refresh_reuse_grace=refresh_reuse_grace,
        )
        self.sync = SyncEpochRevocation(self._core)

    @property
    def store(self) -> Store:
        """The backend this service reads and writes."""
        return self._core.store

    @property
    def claims(self) -> ClaimNames:
        """The claim names this service stamps and reads."""
        return self._core.names

    @property
    def rotated_tokens(self) -> Callable[..., Coroutine[Any, Any, SessionTokens]]:
        """A FastAPI dependency: the session's next pair, for the refresh token this request presents.

        It reads the refresh token wherever AuthX reads one (headers, cookies, query, JSON body, as
        configured), verifies it exactly as ``auth.refresh_token_required`` does (CSRF included for
        cookies), rotates it (``rotate_refresh_token``), and when the token came from cookies sets
        the new access and refresh cookies on the response::

            @app.post("/refresh")
            async def refresh(tokens: SessionTokens = Depends(revocation.rotated_tokens)) -> SessionTokens:
                return tokens
        """
        return rotation_dependency(self, self._core.authx("rotated_tokens").auth)

    @property
    def current_session(self) -> Callable[..., Coroutine[Any, Any, str]]:
        """A FastAPI dependency: the session id of the access token this request presents.

        It verifies the access token as ``auth.access_token_required`` does; a token minted without a
        session (not by ``create_token_pair``) is answered with AuthX's 401::

            @app.post("/logout-device")
            async def logout_device(session_id: str = Depends(revocation.current_session)) -> None:
                await revocation.revoke_session(session_id)
        """
        return session_dependency(self._core.authx("current_session").auth, self._core.names)

    @_awaited
    async def check(self, token: str) -> Decision:
        """Decide whether ``token`` is accepted now, and why, in one store lookup.

        A token that cannot be read, has no string ``sub``, or whose signature does not verify
        is left to AuthX: the decision is ``accepted`` with reason ``not_ours``.

        Raises:
            StoreUnavailableError: The store cannot be read and ``fail_open`` is off.
        """
        return (await self._evaluate(token))[0]

    async def _evaluate(self, token: str) -> Evaluation:
        core = self._core
        if core.reads_inline:
            return core.evaluate_inline(token, core.sync.fetch)
        hook = core.on_decision
        started = time.perf_counter() if hook is not None else 0.0
        read = core.read(token)
        if read is None:
            if hook is not None:
                core.report(None, NOT_OURS, started)
            return NOT_OURS, None, None
        claims, verified = read
        now = core.clock()
        state: Optional[CheckState] = None
        try:
            state = await core.aio.fetch(claims.sub, claims.jti, claims.session_id, now)
            if state.global_ is None and core.sets_up_late:
                await core.aio.setup(now)
                core.set_up = True
                state = await core.aio.fetch(claims.sub, claims.jti, claims.session_id, now)
        except StoreUnavailableError as exc:
            decision = core.store_failed(token, claims, verified, exc, started)
        else:
            decision = core.conclude(token, claims, verified, state, now)
        if hook is not None:
            core.report(claims, decision, started)
        return decision, claims, state

    async def is_token_revoked(self, token: str, **kwargs: Any) -> bool:
        """The AuthX blocklist callback: ``True`` if the token must be refused.

        ``install()`` registers it with ``auth.set_token_blocklist``. It never raises for a bad
        token; store trouble raises ``StoreUnavailableError`` (answered with a 503) unless
        ``fail_open`` is set. An accepted token becomes an authority of the running request: a
        token minted while the request runs never carries epochs newer than it (see ``authority``).
        """
        try:
            decision, claims, state = await self._evaluate(token)
        except StoreUnavailableError:
            raise
        except Exception as exc:
            raise self._core.unexpected(exc) from exc
        if claims is not None and state is not None and decision.reason is Reason.ACCEPTED:
            authority.grant(Authority.of(claims, state))
        return not decision.accepted

    @_awaited
    async def bump_user_epoch(self, uid: str, *, reason: Optional[str] = None) -> EpochRecord:
        """Revoke every token of ``uid`` minted before this call (logout everywhere, password change).

        Once it returns, no such token is accepted by any process sharing the store.

        Args:
            uid: The user id, as in the tokens' ``sub``.
            reason: Kept in the user's record as the audit trail (at most 500 characters).

        Returns:
            The user's new record.
        """
        core = self._core
        uid, why, now = core.uid(uid), core.reason(reason), core.clock()
        record = await core.aio.bump_user(uid, now, why, core.bump_expiry(now))
        authority.note_user_move(uid, record.epoch)
        logger.info("user epoch bumped: uid=%r reason=%r", _short(uid), why)
        return record

    @_awaited
    async def bump_global_epoch(self, *, reason: Optional[str] = None) -> EpochRecord:
        """Revoke every token of every user minted before this call (a leaked key, an incident)."""
        core = self._core
        why = core.reason(reason)
        record = await core.aio.bump_global(core.clock(), why)
        authority.note_global_move(record.epoch)
        logger.warning("global epoch bumped: reason=%r", why)
        return record

    @_awaited
    async def revoke_token(self, token: Union[str, TokenPayload]) -> None:
        """Revoke one token by its ``jti``; the entry lives until the token's ``exp`` plus the leeway.

        Args:
            token: The raw token (its signature is verified; its expiry is not) or an AuthX
                ``TokenPayload`` from a verified request.

        Raises:
            InvalidTokenError: The token does not decode or verify, or has no ``jti``.
        """
        core = self._core
        now = core.clock()
        target = core.revocation_target(token, now)
        if target is not None:
            await core.aio.revoke_token(*target, now)

    @_awaited
    async def revoke_session(
        self,
        session_id: str,
        *,
        expires_at: Union[dt.datetime, float, None] = None,
        uid: Optional[str] = None,
    ) -> bool:
        """Revoke every token minted for ``session_id`` (access and refresh).

        Args:
            session_id: The session id carried in the tokens' session claim.
            expires_at: When the session's longest-lived token expires; by default the session
                lifetime (AuthX's refresh-token lifetime) from now.
            uid: The user the session must belong to (the subject of the request that asks). With
                it, another user's session is refused (``SessionOwnerError``) and left alone: pass
                it whenever the session id comes from the client (a "log out that device" list).

        Returns:
            Whether the store knew a live session by that id; ``False`` means a typo or a session
            already gone (it is still revoked, in case a token of it is still around).

        Raises:
            SessionOwnerError: ``uid`` was given and the session belongs to another user.
        """
        core = self._core
        sid, now = core.session_id(session_id), core.clock()
        owner = core.uid(uid) if uid is not None else None
        return await core.aio.revoke_session(sid, core.session_expiry(now, expires_at), now, owner)

    @_awaited
    async def create_token_pair(
        self,
        uid: str,
        *,
        fresh: bool = False,
        data: Optional[Mapping[str, Any]] = None,
        request: Optional[Request] = None,
        device_info: Optional[dict[str, Any]] = None,
        access_expiry: Any = None,
        refresh_expiry: Any = None,
        scopes: Optional[list[str]] = None,
    ) -> SessionTokens:
        """Mint the access and refresh tokens of a new session (one login, one device).

        The session id comes from ``auth.create_session``, which also keeps the session in AuthX's
        session store when the app set one (``auth.set_session_store``), so ``auth.list_sessions``
        shows it. Both tokens carry the session id and its generation; the session's record in the
        revocation store lives as long as the refresh token.

        Args:
            uid: The user id (the tokens' ``sub``).
            fresh: Whether the access token is fresh (a login with a password is).
            data: The application's own claims, written into both tokens.
            request: The login request; AuthX keeps its client address and user agent with the session.
            device_info: More about the device, kept by AuthX with the session.
            access_expiry: AuthX's ``expiry`` for the access token (default: its config).
            refresh_expiry: AuthX's ``expiry`` for the refresh token (default: its config).
            scopes: Scopes written into both tokens.

        Returns:
            The pair and its session id (AuthX's ``TokenResponse`` plus ``session_id``).

        Raises:
            ConfigurationError: The service was built without the AuthX instance.
            StoreUnavailableError: The store cannot be written (a 503).
        """
        core = self._core
        minter = core.authx("create_token_pair")
        core.uid(uid)
        session = await minter.auth.create_session(uid, request=request, device_info=device_info)
        plan = core.pair_plan(
            minter,
            uid,
            session.session_id,
            fresh=fresh,
            data=data,
            access_expiry=access_expiry,
            refresh_expiry=refresh_expiry,
            scopes=scopes,
        )
        now = core.clock()
        stamps = await core.aio.issue(plan.uid, now, plan.expires_at + core.leeway, plan.session_id)
        return minter.mint(plan, await self._vetted(plan.uid, stamps, plan.session_id, now))

    @_awaited
    async def rotate_refresh_token(self, refresh_token: str) -> SessionTokens:
        """Trade a refresh token for the next pair of its session, detecting reuse (RFC 9700, 4.14.2).

        The token is verified as AuthX verifies a refresh token, then checked for revocation. The
        session's generation moves forward atomically; the new pair carries the session id and
        the refresh token's own application claims. Presenting the refresh token that was just
        replaced again within ``refresh_reuse_grace`` (two tabs refreshing at once, a lost
        response) answers the session's current pair; any older one, or that one later, is a
        replay: the whole session is revoked, so both the thief and the victim must log in again.

        Raises:
            RefreshTokenReusedError: A replay; the session is now revoked (AuthX answers 401).
            authx.exceptions.RevokedTokenError: The token or its session is revoked, its session
                record is lost, or it was not minted by ``create_token_pair`` (401).
            authx.exceptions.JWTDecodeError: Bad signature, expired, or not a JWT (AuthX's 422).
            authx.exceptions.TokenTypeError: Not a refresh token (401).
            ConfigurationError: The service was built without the AuthX instance.
            StoreUnavailableError: The store cannot be reached (a 503).
        """
        core = self._core
        minter = core.authx("rotate_refresh_token")
        plan, generation = core.rotation_plan(minter, refresh_token)
        presented = core.presented(minter, *await self._evaluate(refresh_token))
        now = core.clock()
        until = plan.expires_at + core.leeway
        # See the sync twin: stamps first, so nothing after the move can fail on the store. Between
        # the check above and this read other requests run: a "log out everywhere" that landed there
        # shows as a moved epoch, and the rotation is refused (the new pair would outlive the bump).
        stamps = await core.aio.issue(plan.uid, now, until, plan.session_id)
        stamps = await self._vetted(plan.uid, stamps, None, now, presented)
        outcome = await core.aio.rotate_session(plan.session_id, plan.uid, generation, now, core.grace, until)
        core.rotated(minter, plan, outcome)
        return minter.mint(plan, core.after_rotation(minter, stamps, outcome))

    @_awaited
    async def get_session_record(self, session_id: str) -> Optional[SessionRecord]:
        """Return the session's record (generation, expiry, revoked flag), or ``None``."""
        core = self._core
        return await core.aio.get_session(core.session_id(session_id), core.clock())

    async def _renew(self, token: str, payload: TokenPayload) -> Optional[str]:
        """The implicit refresh's renewal of an access cookie, or ``None`` when it must not be renewed.

        ``payload`` is AuthX's verification of ``token``. The cookie is checked, the store's epochs
        are read where the renewal is minted (which also keeps every record it needs alive for the
        renewal's life), and they must still be the ones the cookie was accepted under: a bump or a
        revocation that lands in between leaves the cookie unrenewed. The renewal keeps the
        cookie's jti, session, stamps, scopes and application claims.
        """
        core = self._core
        minter = core.authx("the implicit refresh")
        decision, claims, state = await self._evaluate(token)
        if claims is None or state is None or decision.reason is not Reason.ACCEPTED:
            return None
        now = core.clock()
        until = minter.access_expiry(time.time()) + core.leeway
        stamps = await core.aio.issue(claims.sub, now, until, claims.session_id)
        # The cookie alone is the authority: what the request's own handler moved (a logout
        # everywhere through this very cookie) must not let the cookie live on.
        verdict = judge_mint((Authority.of(claims, state),), claims.sub, stamps, claims.session_id)
        if verdict.refused is not None:
            logger.info("implicit refresh refused: uid=%r: %s", _short(claims.sub), verdict.refused)
            return None
        for unstamped in verdict.recheck:
            fresh = await core.aio.fetch(unstamped.sub, unstamped.jti, unstamped.session_id, now)
            if not decide(unstamped, fresh, now, core.policy).accepted:
                return None
        return minter.renew(payload, verdict.stamps)

    @_awaited
    async def issue_stamps(self, uid: str, expires_at: float, session_id: Optional[str] = None) -> Stamps:
        """Return the epochs to stamp into a new token of ``uid`` expiring at ``expires_at``.

        With ``session_id``, the stamps also carry the generation of that session's record.
        """
        core = self._core
        sid = core.session_id(session_id) if session_id is not None else None
        uid, now = core.uid(uid), core.clock()
        return await self._vetted(uid, await core.aio.issue(uid, now, expires_at + core.leeway, sid), sid, now)

    async def _vetted(
        self, uid: str, stamps: Stamps, session_id: Optional[str], now: float, *presented: Authority
    ) -> Stamps:
        """The stamps a mint may write under the running request's authorities (see ``authority``)."""
        core = self._core
        verdict = core.vet(uid, stamps, session_id, *presented)
        for claims in core.refused(verdict):
            core.still_accepted(claims, await core.aio.fetch(claims.sub, claims.jti, claims.session_id, now), now)
        return verdict.stamps

    @_awaited
    async def get_user_record(self, uid: str) -> Optional[EpochRecord]:
        """Return the user's record (epoch, when and why it last moved), or ``None``."""
        core = self._core
        return await core.aio.get_user(core.uid(uid), core.clock())

    @_awaited
    async def get_global_record(self) -> Optional[EpochRecord]:
        """Return the global record, or ``None`` if the store has lost it."""
        return await self._core.aio.get_global(self._core.clock())

    @_awaited
    async def stats(self) -> StoreStats:
        """Count what the store holds."""
        # An administrative operation: the blocking side only, in a worker thread (it may scan).
        return await asyncio.to_thread(self._core.sync.stats, self._core.clock())

    @_awaited
    async def ready(self) -> bool:
        """Whether the store answers now: what an orchestrator's readiness probe should ask.

        It sets the store up if that could not be done at start (the store was down), then reads
        it back. ``False`` (and a warning in the log) while the store cannot be reached: the app
        answers 503 to what needs the store until then, and comes back on its own.
        """
        core = self._core
        now = core.clock()
        try:
            if not core.set_up:
                await core.aio.setup(now)
                core.set_up = True
            return await core.aio.get_global(now) is not None
        except StoreUnavailableError as exc:
            logger.warning("revocation store not ready: %s", exc)
            return False

    async def aclose(self) -> None:
        """Release the store's connections: this event loop's and the blocking ones (app shutdown)."""
        core = self._core
        await core.aio.close()
        core.sync.close()

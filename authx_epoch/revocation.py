"""The revocation service: bump, revoke, check and stamp, async-first with a sync twin.

Every decision is made once, in pure code shared by both twins: the check and the expiry
arithmetic in ``checking``, argument validation in ``validation``, the rules of mints and sessions
in ``minting``. ``EpochRevocation`` (async, here) and ``SyncEpochRevocation`` (its twin in
``blocking``, reached as ``revocation.sync``) only fetch from and write to the store, so the two
can never drift apart.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, Optional, Union

from authx import AuthX
from authx.schema import TokenPayload
from fastapi import Request

from authx_epoch import authority, validation
from authx_epoch.authority import Authority
from authx_epoch.blocking import SyncEpochRevocation, awaited
from authx_epoch.checking import Checker, Clock, DecisionEvent, DecisionHook, Verifier, wall_clock
from authx_epoch.claims import ClaimNames
from authx_epoch.decision import Decision, Reason
from authx_epoch.errors import StoreUnavailableError
from authx_epoch.minting import AuthxHooks, MintRules
from authx_epoch.records import EpochRecord, SessionRecord, Stamps, StoreStats
from authx_epoch.sessions import (
    DEFAULT_REFRESH_REUSE_GRACE,
    SessionTokens,
    rotation_dependency,
    session_dependency,
)
from authx_epoch.stores import Store
from authx_epoch.validation import MAX_ID_LENGTH, MAX_REASON_LENGTH, shorten

logger = logging.getLogger("authx_epoch")


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
        names = claims or ClaimNames()
        self._checker = Checker(
            store,
            claims=names,
            clock=clock,
            fail_open=fail_open,
            accept_unstamped_until=accept_unstamped_until,
            revocation_leeway=revocation_leeway,
            max_token_lifetime=max_token_lifetime,
            session_lifetime=session_lifetime,
            verifier=verifier,
            on_decision=on_decision,
            auth=auth,
        )
        checker = self._checker
        self._mint = MintRules(auth, names, checker.policy, checker.max_lifetime, refresh_reuse_grace)
        self.sync = SyncEpochRevocation(checker, self._mint)

    @property
    def store(self) -> Store:
        """The backend this service reads and writes."""
        return self._checker.store

    @property
    def claims(self) -> ClaimNames:
        """The claim names this service stamps and reads."""
        return self._checker.names

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
        return rotation_dependency(self, self._mint.authx("rotated_tokens").auth)

    @property
    def current_session(self) -> Callable[..., Coroutine[Any, Any, str]]:
        """A FastAPI dependency: the session id of the access token this request presents.

        It verifies the access token as ``auth.access_token_required`` does; a token minted without a
        session (not by ``create_token_pair``) is answered with AuthX's 401::

            @app.post("/logout-device")
            async def logout_device(session_id: str = Depends(revocation.current_session)) -> None:
                await revocation.revoke_session(session_id)
        """
        return session_dependency(self._mint.authx("current_session").auth, self._checker.names)

    @awaited
    async def check(self, token: str) -> Decision:
        """Decide whether ``token`` is accepted now, and why, in one store lookup.

        A token that cannot be read, has no string ``sub``, or whose signature does not verify
        is left to AuthX: the decision is ``accepted`` with reason ``not_ours``.

        Raises:
            StoreUnavailableError: The store cannot be read and ``fail_open`` is off.
        """
        return (await self._checker.evaluate(token))[0]

    async def is_token_revoked(self, token: str, **kwargs: Any) -> bool:
        """The AuthX blocklist callback: ``True`` if the token must be refused.

        ``install()`` registers it with ``auth.set_token_blocklist``. It never raises for a bad
        token; store trouble raises ``StoreUnavailableError`` (answered with a 503) unless
        ``fail_open`` is set. An accepted token becomes an authority of the running request: a
        token minted while the request runs never carries epochs newer than it (see ``authority``).
        """
        try:
            decision, claims, state = await self._checker.evaluate(token)
        except StoreUnavailableError:
            raise
        except Exception as exc:
            raise self._checker.unexpected(exc) from exc
        if claims is not None and state is not None and decision.reason is Reason.ACCEPTED:
            authority.grant(Authority.of(claims, state))
        return not decision.accepted

    @awaited
    async def bump_user_epoch(self, uid: str, *, reason: Optional[str] = None) -> EpochRecord:
        """Revoke every token of ``uid`` minted before this call (logout everywhere, password change).

        Once it returns, no such token is accepted by any process sharing the store.

        Args:
            uid: The user id, as in the tokens' ``sub``.
            reason: Kept in the user's record as the audit trail (at most 500 characters).

        Returns:
            The user's new record.
        """
        core = self._checker
        uid, why, now = validation.uid(uid), validation.reason(reason), core.clock()
        record = await core.aio.bump_user(uid, now, why, core.bump_expiry(now))
        authority.note_user_move(uid, record.epoch)
        logger.info("user epoch bumped: uid=%r reason=%r", shorten(uid), why)
        return record

    @awaited
    async def bump_global_epoch(self, *, reason: Optional[str] = None) -> EpochRecord:
        """Revoke every token of every user minted before this call (a leaked key, an incident)."""
        core = self._checker
        why = validation.reason(reason)
        record = await core.aio.bump_global(core.clock(), why)
        authority.note_global_move(record.epoch)
        logger.warning("global epoch bumped: reason=%r", why)
        return record

    @awaited
    async def revoke_token(self, token: Union[str, TokenPayload]) -> Optional[float]:
        """Revoke one token by its ``jti``; the entry lives until the token's ``exp`` plus the leeway.

        Args:
            token: The raw token (its signature is verified; its expiry is not) or an AuthX
                ``TokenPayload`` from a verified request.

        Returns:
            When the revocation lapses (Unix seconds), or ``None`` if the token had already
            expired, so nothing was written.

        Raises:
            InvalidTokenError: The token does not decode or verify, has no ``jti``, or its ``sub``
                or ``jti`` is longer than ``MAX_ID_LENGTH``.
        """
        core = self._checker
        now = core.clock()
        target = core.revocation_target(token, now)
        if target is None:
            return None
        await core.aio.revoke_token(*target, now)
        return target[2]

    @awaited
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
        core = self._checker
        sid, now = validation.session_id(session_id), core.clock()
        owner = validation.uid(uid) if uid is not None else None
        return await core.aio.revoke_session(sid, core.session_expiry(now, expires_at), now, owner)

    @awaited
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
        core, mint = self._checker, self._mint
        minter = mint.authx("create_token_pair")
        validation.uid(uid)
        session = await minter.auth.create_session(uid, request=request, device_info=device_info)
        plan = mint.pair_plan(
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

    @awaited
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
        core, mint = self._checker, self._mint
        minter = mint.authx("rotate_refresh_token")
        plan, generation = mint.rotation_plan(minter, refresh_token)
        presented = mint.presented(minter, *await self._checker.evaluate(refresh_token))
        now = core.clock()
        until = plan.expires_at + core.leeway
        # See the sync twin: stamps first, so nothing after the move can fail on the store. Between
        # the check above and this read other requests run: a "log out everywhere" that landed there
        # shows as a moved epoch, and the rotation is refused (the new pair would outlive the bump).
        stamps = await core.aio.issue(plan.uid, now, until, plan.session_id)
        stamps = await self._vetted(plan.uid, stamps, None, now, presented)
        outcome = await core.aio.rotate_session(plan.session_id, plan.uid, generation, now, mint.grace, until)
        mint.rotated(minter, plan, outcome)
        return minter.mint(plan, mint.after_rotation(minter, stamps, outcome))

    @awaited
    async def get_session_record(self, session_id: str) -> Optional[SessionRecord]:
        """Return the session's record (generation, expiry, revoked flag), or ``None``."""
        core = self._checker
        return await core.aio.get_session(validation.session_id(session_id), core.clock())

    @awaited
    async def issue_stamps(self, uid: str, expires_at: float, session_id: Optional[str] = None) -> Stamps:
        """Return the epochs to stamp into a new token of ``uid`` expiring at ``expires_at``.

        With ``session_id``, the stamps also carry the generation of that session's record.
        """
        core = self._checker
        sid = validation.session_id(session_id) if session_id is not None else None
        uid, now = validation.uid(uid), core.clock()
        return await self._vetted(uid, await core.aio.issue(uid, now, expires_at + core.leeway, sid), sid, now)

    async def _vetted(
        self, uid: str, stamps: Stamps, session_id: Optional[str], now: float, *presented: Authority
    ) -> Stamps:
        """The stamps a mint may write under the running request's authorities (see ``authority``)."""
        core, mint = self._checker, self._mint
        verdict = mint.vet(uid, stamps, session_id, *presented)
        for claims in mint.refused(verdict):
            mint.still_accepted(claims, await core.aio.fetch(claims.sub, claims.jti, claims.session_id, now), now)
        return verdict.stamps

    @awaited
    async def get_user_record(self, uid: str) -> Optional[EpochRecord]:
        """Return the user's record (epoch, when and why it last moved), or ``None``."""
        core = self._checker
        return await core.aio.get_user(validation.uid(uid), core.clock())

    @awaited
    async def get_global_record(self) -> Optional[EpochRecord]:
        """Return the global record, or ``None`` if the store has lost it."""
        return await self._checker.aio.get_global(self._checker.clock())

    @awaited
    async def stats(self) -> StoreStats:
        """Count what the store holds."""
        # An administrative operation: the blocking side only, in a worker thread (it may scan).
        return await asyncio.to_thread(self._checker.sync.stats, self._checker.clock())

    @awaited
    async def ready(self) -> bool:
        """Whether the store answers now: what an orchestrator's readiness probe should ask.

        It sets the store up if that could not be done at start (the store was down), then reads
        it back. ``False`` (and a warning in the log) while the store cannot be reached: the app
        answers 503 to what needs the store until then, and comes back on its own.
        """
        core = self._checker
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
        core = self._checker
        await core.aio.close()
        core.sync.close()


def authx_hooks(revocation: EpochRevocation) -> AuthxHooks:
    """The hooks ``install()`` plugs into AuthX for ``revocation``, which must have been built with ``auth``.

    Here rather than beside ``AuthxHooks`` because it reads the service's own parts.

    Raises:
        ConfigurationError: The service was built without the AuthX instance.
    """
    return AuthxHooks.of(revocation._checker, revocation._mint)


# The service's own names, and those its callers imported from here before the check, the
# validation, the mint rules and the blocking twin moved out (kept so their imports keep working).
__all__ = [
    "MAX_ID_LENGTH",
    "MAX_REASON_LENGTH",
    "Clock",
    "DecisionEvent",
    "DecisionHook",
    "EpochRevocation",
    "SyncEpochRevocation",
    "Verifier",
    "authx_hooks",
    "wall_clock",
]

"""The blocking side of the service: ``SyncEpochRevocation``, and the guard of the async one's coroutines.

``SyncEpochRevocation`` is the blocking twin of ``EpochRevocation`` (reached as ``revocation.sync``):
the same methods over the same ``Checker`` and ``MintRules``, calling the store's blocking side.
``awaited`` wraps the async service's coroutine methods so that one called without ``await`` from a
worker thread (a ``def`` endpoint), where it would never run, raises and names the twin to call.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import logging
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, Optional, ParamSpec, TypeVar, Union

import anyio.from_thread
from authx.schema import TokenPayload
from fastapi import Request

from authx_epoch import authority, validation
from authx_epoch.authority import Authority
from authx_epoch.checking import Checker
from authx_epoch.decision import Decision
from authx_epoch.errors import ConfigurationError, MissingAwaitError, StoreUnavailableError
from authx_epoch.minting import MintRules
from authx_epoch.records import EpochRecord, SessionRecord, Stamps, StoreStats
from authx_epoch.sessions import SessionTokens
from authx_epoch.validation import shorten

logger = logging.getLogger("authx_epoch")


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


def awaited(method: Callable[_P, Coroutine[Any, Any, _R]]) -> Callable[_P, Coroutine[Any, Any, _R]]:
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


class SyncEpochRevocation:
    """The blocking twin of ``EpochRevocation``: the same methods, for scripts and sync code.

    Reach it as ``revocation.sync``; it shares the store and every setting with its async twin.
    """

    def __init__(self, checker: Checker, mint: MintRules) -> None:
        """Share the async service's check and mint rules; use ``revocation.sync`` rather than building one."""
        self._checker = checker
        self._mint = mint

    def check(self, token: str) -> Decision:
        """Decide whether ``token`` is accepted now, and why. See ``EpochRevocation.check``."""
        core = self._checker
        return core.check_inline(token, core.sync.fetch)

    def is_token_revoked(self, token: str) -> bool:
        """Return ``True`` if ``token`` must be refused. See ``EpochRevocation.is_token_revoked``."""
        core = self._checker
        try:
            return not core.check_inline(token, core.sync.fetch, grant=True).accepted
        except StoreUnavailableError:
            raise
        except Exception as exc:
            raise core.unexpected(exc) from exc

    def bump_user_epoch(self, uid: str, *, reason: Optional[str] = None) -> EpochRecord:
        """Revoke every token of ``uid`` minted before this call. See ``EpochRevocation.bump_user_epoch``."""
        core = self._checker
        uid, why, now = validation.uid(uid), validation.reason(reason), core.clock()
        record = core.sync.bump_user(uid, now, why, core.bump_expiry(now))
        authority.note_user_move(uid, record.epoch)
        logger.info("user epoch bumped: uid=%r reason=%r", shorten(uid), why)
        return record

    def bump_global_epoch(self, *, reason: Optional[str] = None) -> EpochRecord:
        """Revoke every token of every user minted before this call."""
        core = self._checker
        why = validation.reason(reason)
        record = core.sync.bump_global(core.clock(), why)
        authority.note_global_move(record.epoch)
        logger.warning("global epoch bumped: reason=%r", why)
        return record

    def revoke_token(self, token: Union[str, TokenPayload]) -> Optional[float]:
        """Revoke one token by its jti until it expires. See ``EpochRevocation.revoke_token``."""
        core = self._checker
        now = core.clock()
        target = core.revocation_target(token, now)
        if target is None:
            return None
        core.sync.revoke_token(*target, now)
        return target[2]

    def revoke_session(
        self,
        session_id: str,
        *,
        expires_at: Union[dt.datetime, float, None] = None,
        uid: Optional[str] = None,
    ) -> bool:
        """Revoke every token of a session. See ``EpochRevocation.revoke_session``."""
        core = self._checker
        sid, now = validation.session_id(session_id), core.clock()
        owner = validation.uid(uid) if uid is not None else None
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
        core, mint = self._checker, self._mint
        minter = mint.authx("create_token_pair")
        validation.uid(uid)
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
        stamps = core.sync.issue(plan.uid, now, plan.expires_at + core.leeway, plan.session_id)
        return minter.mint(plan, self._vetted(plan.uid, stamps, plan.session_id, now))

    def rotate_refresh_token(self, refresh_token: str) -> SessionTokens:
        """Trade a refresh token for the next pair of its session. See ``EpochRevocation.rotate_refresh_token``."""
        core, mint = self._checker, self._mint
        minter = mint.authx("rotate_refresh_token")
        plan, generation = mint.rotation_plan(minter, refresh_token)
        decision, claims, state = core.evaluate_inline(refresh_token, core.sync.fetch)
        presented = mint.presented(minter, decision, claims, state)
        now = core.clock()
        until = plan.expires_at + core.leeway
        # The stamps are read before the generation moves, so minting needs no store call after
        # it: an outage cannot strike in between and turn the client's retry into a "replay".
        # They are judged against the refresh token's: a bump that landed since its check means
        # the session was logged out, and nothing is rotated (see the async twin).
        stamps = core.sync.issue(plan.uid, now, until, plan.session_id)
        stamps = self._vetted(plan.uid, stamps, None, now, presented)
        outcome = core.sync.rotate_session(plan.session_id, plan.uid, generation, now, mint.grace, until)
        mint.rotated(minter, plan, outcome)
        return minter.mint(plan, mint.after_rotation(minter, stamps, outcome))

    def get_session_record(self, session_id: str) -> Optional[SessionRecord]:
        """Return the session's record (generation, expiry, revoked flag), or ``None``."""
        core = self._checker
        return core.sync.get_session(validation.session_id(session_id), core.clock())

    def issue_stamps(self, uid: str, expires_at: float, session_id: Optional[str] = None) -> Stamps:
        """Return the epochs to stamp into a new token of ``uid`` expiring at ``expires_at``.

        With ``session_id``, the stamps also carry the generation of that session's record.
        """
        core = self._checker
        sid = validation.session_id(session_id) if session_id is not None else None
        uid, now = validation.uid(uid), core.clock()
        return self._vetted(uid, core.sync.issue(uid, now, expires_at + core.leeway, sid), sid, now)

    def _vetted(self, uid: str, stamps: Stamps, session_id: Optional[str], now: float, *presented: Authority) -> Stamps:
        """The stamps a mint may write under the running request's authorities (see ``authority``)."""
        core, mint = self._checker, self._mint
        verdict = mint.vet(uid, stamps, session_id, *presented)
        for claims in mint.refused(verdict):
            mint.still_accepted(claims, core.sync.fetch(claims.sub, claims.jti, claims.session_id, now), now)
        return verdict.stamps

    def get_user_record(self, uid: str) -> Optional[EpochRecord]:
        """Return the user's record (epoch, when and why it last moved), or ``None``."""
        core = self._checker
        return core.sync.get_user(validation.uid(uid), core.clock())

    def get_global_record(self) -> Optional[EpochRecord]:
        """Return the global record, or ``None`` if the store has lost it."""
        return self._checker.sync.get_global(self._checker.clock())

    def stats(self) -> StoreStats:
        """Count what the store holds."""
        return self._checker.sync.stats(self._checker.clock())

    def ready(self) -> bool:
        """Whether the store answers now (set up, read back). See ``EpochRevocation.ready``."""
        core = self._checker
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
        self._checker.sync.close()


__all__ = ["SyncEpochRevocation", "awaited"]

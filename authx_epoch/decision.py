"""The decision for one presented token: pure, no I/O, shared by every store and both twins."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Optional

from authx_epoch.claims import StampState, TokenClaims
from authx_epoch.records import CheckState


class Reason(str, Enum):
    """Why a token was accepted or rejected."""

    ACCEPTED = "accepted"
    #: The token could not be read or has no string ``sub``: AuthX decides alone.
    NOT_OURS = "not_ours"
    TOKEN_REVOKED = "token_revoked"
    SESSION_REVOKED = "session_revoked"
    #: The token names a session that belongs to another user.
    SESSION_MISMATCH = "session_mismatch"
    MALFORMED_STAMP = "malformed_stamp"
    GLOBAL_EPOCH = "global_epoch"
    USER_EPOCH = "user_epoch"
    LOST_STATE = "lost_state"
    UNSTAMPED = "unstamped"
    #: A token without ``exp`` older than ``max_token_lifetime``.
    LIFETIME_EXCEEDED = "lifetime_exceeded"
    #: The store could not be read and ``fail_open=True`` let the token through unchecked.
    FAIL_OPEN = "fail_open"
    #: The store could not be read and the request was refused with a 503 (fail-closed).
    STORE_UNAVAILABLE = "store_unavailable"


@dataclass(frozen=True)
class Decision:
    """The outcome of one check.

    Attributes:
        accepted: ``False`` if the token must be refused as revoked.
        reason: Why.
    """

    accepted: bool
    reason: Reason


ACCEPT = Decision(True, Reason.ACCEPTED)
NOT_OURS = Decision(True, Reason.NOT_OURS)


@dataclass(frozen=True)
class Policy:
    """The settings the decision depends on.

    Attributes:
        accept_unstamped_until: End of the migration window (Unix seconds), or ``None`` for no window.
        max_token_lifetime: Seconds after ``iat`` past which a token without ``exp`` is refused.
    """

    accept_unstamped_until: Optional[float] = None
    max_token_lifetime: float = 30 * 24 * 3600.0


def _reject(reason: Reason) -> Decision:
    return Decision(False, reason)


def decide(claims: TokenClaims, state: CheckState, now: float, policy: Policy) -> Decision:
    """Decide whether a token is revoked, following the table in the design notes.

    Any loss of state (a missing user or global record) ends in rejection, never in acceptance.
    """
    if state.jti_revoked:
        return _reject(Reason.TOKEN_REVOKED)
    if state.session_revoked:
        return _reject(Reason.SESSION_REVOKED)
    session = state.session
    if session is not None and session.uid is not None and session.uid != claims.sub:
        # A session is one user's login: a token of anyone else naming it touches nothing of it.
        return _reject(Reason.SESSION_MISMATCH)
    if claims.exp is None and (claims.iat is None or now > claims.iat + policy.max_token_lifetime):
        return _reject(Reason.LIFETIME_EXCEEDED)
    if claims.stamp is StampState.MALFORMED:
        return _reject(Reason.MALFORMED_STAMP)
    global_record = state.global_
    if claims.stamp is StampState.STAMPED:
        if global_record is None:
            return _reject(Reason.LOST_STATE)
        if claims.global_epoch != global_record.epoch:
            return _reject(Reason.GLOBAL_EPOCH)
        if state.user is None:
            return _reject(Reason.LOST_STATE)
        if claims.user_epoch != state.user.epoch:
            return _reject(Reason.USER_EPOCH)
        generation = claims.session_generation
        if generation is not None:
            # Stamped for a session: its record must be there (a missing one was evicted or
            # wiped, perhaps with its revoked flag) and must not be younger than the token.
            # Older generations are fine: access tokens of a rotated session live out their time.
            if session is None or generation < session.first_generation:
                return _reject(Reason.LOST_STATE)
            if session.revoked:
                return _reject(Reason.SESSION_REVOKED)
        return ACCEPT
    return _decide_unstamped(claims, state, now, policy)


def _decide_unstamped(claims: TokenClaims, state: CheckState, now: float, policy: Policy) -> Decision:
    deadline = policy.accept_unstamped_until
    if deadline is None or now >= deadline:
        return _reject(Reason.UNSTAMPED)
    global_record = state.global_
    if global_record is None:
        return _reject(Reason.LOST_STATE)
    # Only tokens minted before the store was set up can legitimately lack a stamp.
    if claims.iat is None or claims.iat >= global_record.created_at:
        return _reject(Reason.UNSTAMPED)
    if global_record.bumped_at is not None:
        return _reject(Reason.UNSTAMPED)
    if state.user is not None and state.user.bumped_at is not None:
        return _reject(Reason.UNSTAMPED)
    return ACCEPT

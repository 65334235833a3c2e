"""What a store keeps, as plain immutable values, and the epoch arithmetic on them."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, replace
from enum import Enum
from typing import Optional

from authx_epoch.errors import InvalidArgumentError, SessionOwnerError

#: Epochs are whole microseconds since the Unix epoch, or one more than the previous value.
EPOCH_SCALE = 1_000_000
#: The largest value a stamp may hold; larger claims are malformed (they would not fit SQLite).
MAX_EPOCH = 2**63 - 1


def unix_time(value: object) -> Optional[float]:
    """Unix seconds from a datetime or a number (never a bool); ``None`` for anything else.

    Tokens hold numbers; AuthX's ``TokenPayload`` and callers' arguments hold datetimes.
    """
    if isinstance(value, dt.datetime):
        return value.timestamp()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None


def clock_epoch(now: float) -> int:
    """Return the epoch value the clock gives at ``now`` (Unix seconds).

    Deriving epochs from the clock is what makes them never repeat, even after a store is wiped:
    a record created after a wipe starts at the current time, which is later than any value the
    lost record can have reached, except within microseconds of a burst of bumps.
    """
    return int(now * EPOCH_SCALE)


def next_epoch(current: Optional[int], now: float) -> int:
    """Return the epoch that a bump moves ``current`` to: ``max(current + 1, clock value)``."""
    candidate = clock_epoch(now)
    if current is None:
        return candidate
    return max(current + 1, candidate)


@dataclass(frozen=True)
class EpochRecord:
    """The state kept for one user, or for the global scope.

    Attributes:
        epoch: The current epoch; a token is accepted only if it carries this exact value.
        created_at: When the record was created (Unix seconds). For the global record this is
            when the store was first set up.
        bumped_at: When the epoch last moved, or ``None`` if it never moved since creation.
        reason: Why it last moved, as given to ``bump_user_epoch`` / ``bump_global_epoch``.
        expires_at: When the record may be forgotten (no live token can match it after that),
            or ``None`` for records that never expire (the global record).
    """

    epoch: int
    created_at: float
    bumped_at: Optional[float] = None
    reason: Optional[str] = None
    expires_at: Optional[float] = None

    def is_live(self, now: float) -> bool:
        """Return whether the record still counts at ``now``."""
        return self.expires_at is None or self.expires_at > now


@dataclass(frozen=True)
class SessionRecord:
    """The state kept for one session (one login): what rotation and per-device logout need.

    Attributes:
        generation: The session's current generation; a rotation moves it to
            ``max(generation + 1, clock value)``. Tokens carry the generation they were minted at.
        first_generation: The generation the record was created with. A token stamped with an
            older one belongs to a record that was lost (evicted, wiped): it is never accepted.
        created_at: When the record was created (Unix seconds).
        expires_at: When the record may be forgotten: the expiry of the session's longest-lived
            token (plus slack); extended by every mint, never shortened.
        uid: The user the session belongs to (``None`` for a record created by a revocation).
        rotated_at: When the generation last moved, or ``None``.
        previous: The generation before the last rotation, or ``None``.
        revoked: Whether the session is revoked: every token of it is rejected.
        grace_used: Whether the previous generation was already answered once within the grace
            interval since the last rotation (a second time is a reuse).
    """

    generation: int
    first_generation: int
    created_at: float
    expires_at: float
    uid: Optional[str] = None
    rotated_at: Optional[float] = None
    previous: Optional[int] = None
    revoked: bool = False
    grace_used: bool = False

    def is_live(self, now: float) -> bool:
        """Return whether the record still counts at ``now``."""
        return self.expires_at > now

    def owned_by_another(self, uid: Optional[str], now: float) -> bool:
        """Return whether the record is live and belongs to a user other than ``uid``.

        A record without an owner (created revoked by ``revoke_session`` of an unknown id)
        belongs to nobody and blocks no one; ``uid=None`` (an operator's call) is nobody either.
        """
        return uid is not None and self.uid is not None and self.uid != uid and self.is_live(now)


class RotationStatus(str, Enum):
    """What ``rotate_session`` did with a presented refresh-token generation."""

    #: The presented generation was the current one: the generation moved forward.
    ROTATED = "rotated"
    #: The presented generation was the one just replaced, within the grace interval, for the
    #: first time since that rotation: no move (the grace is now used up).
    GRACE = "grace"
    #: An older generation, the previous one after the grace interval, or the previous one again
    #: once the grace was used: the session is now revoked.
    REUSED = "reused"
    #: The session was already revoked.
    REVOKED = "revoked"
    #: The store has no such session for this user (never created, expired, lost, or another
    #: user's): the token is refused.
    MISSING = "missing"


@dataclass(frozen=True)
class RotationOutcome:
    """The result of one ``rotate_session`` call.

    Attributes:
        status: What happened.
        session: The session record after the call (``None`` when ``MISSING``).
    """

    status: RotationStatus
    session: Optional[SessionRecord] = None


def rotate(
    record: Optional[SessionRecord], uid: str, presented: int, now: float, grace: float, expires_at: float
) -> tuple[RotationOutcome, Optional[SessionRecord]]:
    """Decide one rotation: return the outcome and the record to write (``None``: write nothing).

    Pure, shared by the stores that run it in a local transaction (the Redis script mirrors it).
    A record of another user answers ``MISSING`` (without the record) and nothing is written. A
    generation newer than the current one, or older than the record itself, can only come from
    lost or rolled-back state: ``MISSING`` (refused, nothing written), never a revocation. The
    previous generation within ``grace`` of the rotation is answered once (``GRACE``, and the
    record remembers it); presented again, it is a reuse like any older generation.
    """
    if record is None or not record.is_live(now) or record.owned_by_another(uid, now):
        return RotationOutcome(RotationStatus.MISSING), None
    if record.revoked:
        return RotationOutcome(RotationStatus.REVOKED, record), None
    if presented > record.generation or presented < record.first_generation:
        return RotationOutcome(RotationStatus.MISSING, record), None
    longest = max(record.expires_at, expires_at)
    if presented == record.generation:
        moved = replace(
            record,
            generation=next_epoch(record.generation, now),
            expires_at=longest,
            rotated_at=now,
            previous=record.generation,
            revoked=False,
            grace_used=False,
        )
        return RotationOutcome(RotationStatus.ROTATED, moved), moved
    if (
        presented == record.previous
        and record.rotated_at is not None
        and now - record.rotated_at <= grace
        and not record.grace_used
    ):
        used = replace(record, expires_at=longest, grace_used=True)
        return RotationOutcome(RotationStatus.GRACE, used), used
    revoked = replace(record, expires_at=longest, revoked=True)
    return RotationOutcome(RotationStatus.REUSED, revoked), revoked


def new_session(uid: Optional[str], now: float, expires_at: float, *, revoked: bool = False) -> SessionRecord:
    """A fresh session record; its generation comes from the clock, like an epoch."""
    generation = clock_epoch(now)
    return SessionRecord(
        generation=generation,
        first_generation=generation,
        created_at=now,
        expires_at=expires_at,
        uid=uid,
        revoked=revoked,
    )


def ensure_session(
    record: Optional[SessionRecord], uid: str, now: float, keep_until: float, extend_to: float
) -> Optional[SessionRecord]:
    """The record a mint needs for its session, or ``None`` when the existing one will do (no write).

    A missing or expired record is created; a live one that would expire before ``keep_until``
    is extended to ``extend_to`` (so the next mints need no write). Never un-revokes.

    Raises:
        SessionOwnerError: The live record belongs to another user (nothing may be written).
    """
    if record is None or not record.is_live(now):
        fresh = new_session(uid, now, extend_to)
        if record is not None and record.generation >= fresh.generation:
            # Burst within the clock's resolution: still never reuse a generation.
            generation = record.generation + 1
            fresh = SessionRecord(generation, generation, now, extend_to, uid)
        return fresh
    if record.owned_by_another(uid, now):
        raise SessionOwnerError()
    if record.expires_at < keep_until:
        return replace(record, expires_at=extend_to, uid=record.uid if record.uid is not None else uid)
    return None


def revoke_session_record(
    record: Optional[SessionRecord], now: float, expires_at: float, uid: Optional[str] = None
) -> SessionRecord:
    """The record after ``revoke_session``: revoked, living at least until ``expires_at``.

    An unknown (or expired) session gets a new revoked record owned by ``uid`` (``None``: nobody).

    Raises:
        SessionOwnerError: ``uid`` is given and the live record belongs to another user.
    """
    if record is None or not record.is_live(now):
        return new_session(uid, now, expires_at, revoked=True)
    if record.owned_by_another(uid, now):
        raise SessionOwnerError()
    return replace(
        record,
        expires_at=max(record.expires_at, expires_at),
        uid=record.uid if record.uid is not None else uid,
        revoked=True,
    )


@dataclass(frozen=True, init=False)
class CheckState:
    """Everything one check needs from the store, fetched in one call.

    Attributes:
        user: The user's record, or ``None`` if the store has none (never created, expired or lost).
        global_: The global record, or ``None`` if the store has lost it.
        jti_revoked: Whether the token's ``jti`` is in the revoked set.
        session_revoked: Whether the token's session is revoked.
        session: The token's live session record, or ``None`` (no session id, or none in the store).
    """

    user: Optional[EpochRecord]
    global_: Optional[EpochRecord]
    jti_revoked: bool = False
    session_revoked: bool = False
    session: Optional[SessionRecord] = None

    def __init__(
        self,
        user: Optional[EpochRecord],
        global_: Optional[EpochRecord],
        jti_revoked: bool = False,
        session_revoked: bool = False,
        session: Optional[SessionRecord] = None,
    ) -> None:
        # One is built for every request; the frozen dataclass's generated __init__ (one
        # object.__setattr__ per field) would be a third of what a check with the memory store
        # costs. Writing the instance dict once keeps it frozen to callers.
        fields = self.__dict__
        fields["user"] = user
        fields["global_"] = global_
        fields["jti_revoked"] = jti_revoked
        fields["session_revoked"] = session_revoked
        fields["session"] = session


@dataclass(frozen=True)
class Stamps:
    """The epochs written into a token when it is minted.

    Attributes:
        user_epoch: The user's epoch.
        global_epoch: The global epoch.
        session_generation: The generation of the token's session, when it is minted for one.
    """

    user_epoch: int
    global_epoch: int
    session_generation: Optional[int] = None


@dataclass(frozen=True)
class StoreStats:
    """Counts of what a store holds right now (expired entries are not counted).

    Attributes:
        kind: The store's kind: ``memory``, ``sqlite``, ``redis`` or ``redis+cluster``.
        users: User records held.
        revoked_tokens: Revoked, unexpired token ids.
        revoked_sessions: Revoked, unexpired sessions.
        sessions: Session records held (live sessions, revoked ones included), or ``None`` from
            a store that does not count them.
    """

    kind: str
    users: int
    revoked_tokens: int
    revoked_sessions: int
    sessions: Optional[int] = None


#: When a mint has to extend a user record's life, it extends it this much further (seconds),
#: so that the next mints of the same user within the hour need no write at all.
RECORD_SLACK = 3600.0


@dataclass(frozen=True)
class SnapshotEntry:
    """One item of a store's exported state (see ``authx-epoch export``).

    Attributes:
        kind: ``user``, ``global``, ``token`` (a revoked jti) or ``session`` (a session, live or revoked).
        key: The user id, jti or session id (empty for the global record).
        record: The epoch record, for ``user`` and ``global``.
        expires_at: When the entry may be forgotten, for ``token`` and ``session`` (for a session
            with its record, the record's ``expires_at``).
        uid: The user a revoked token belongs to, for ``token`` (required: a revoked jti is per user).
        session: The session's record (generation, revoked flag...), for ``session``. A ``session``
            entry without one (all that version-1 snapshots hold) is a revoked session id, kept
            until ``expires_at``.
    """

    kind: str
    key: str
    record: Optional[EpochRecord] = None
    expires_at: Optional[float] = None
    uid: Optional[str] = None
    session: Optional[SessionRecord] = None


def merge_records(old: Optional[EpochRecord], new: EpochRecord) -> EpochRecord:
    """Combine an existing record with an imported one without ever moving an epoch backwards.

    The higher epoch wins with its audit fields; the record lives as long as either would.
    """
    if old is None:
        return new
    winner = new if new.epoch > old.epoch else old
    if old.expires_at is None or new.expires_at is None:
        expires_at = None if winner.expires_at is None else winner.expires_at
    else:
        expires_at = max(old.expires_at, new.expires_at)
    return EpochRecord(
        epoch=winner.epoch,
        created_at=min(old.created_at, new.created_at),
        bumped_at=winner.bumped_at,
        reason=winner.reason,
        expires_at=expires_at,
    )


def merge_sessions(old: Optional[SessionRecord], new: SessionRecord, now: float) -> SessionRecord:
    """Combine an existing session record with an imported one, never losing a rotation or a revocation.

    The higher generation wins with its rotation fields (and the first generation of its record:
    tokens older than that belong to state the winner lost, and stay refused; and its
    ``grace_used``: the grace belongs to the winner's rotation); revoked stays revoked; the record
    lives as long as either would. At equal generations the grace counts as used if either side
    used it. An expired ``old`` counts as missing.
    """
    if old is None or not old.is_live(now):
        return new
    if new.generation == old.generation:
        winner, first = old, max(old.first_generation, new.first_generation)
        grace_used = old.grace_used or new.grace_used
    else:
        winner = new if new.generation > old.generation else old
        first, grace_used = winner.first_generation, winner.grace_used
    other = old if winner is new else new
    return SessionRecord(
        generation=winner.generation,
        first_generation=first,
        created_at=min(old.created_at, new.created_at),
        expires_at=max(old.expires_at, new.expires_at),
        uid=winner.uid if winner.uid is not None else other.uid,
        rotated_at=winner.rotated_at,
        previous=winner.previous,
        revoked=old.revoked or new.revoked,
        grace_used=grace_used,
    )


def owned_entries(entries: Iterable[SnapshotEntry]) -> list[SnapshotEntry]:
    """The entries to import, as a list; refuses the whole import if a revoked token has no owner.

    A revoked jti is per user: one without its owner (only version-1 snapshots can lack it) cannot
    be kept under that rule, and guessing an owner could leave another user's token revoked or
    a revoked one accepted.

    Raises:
        InvalidArgumentError: A ``token`` entry has no ``uid``; nothing was imported.
    """
    found = list(entries)
    for entry in found:
        if entry.kind == "token" and entry.uid is None:
            raise InvalidArgumentError(
                f"the revoked token {entry.key!r:.40} has no owner, and a revoked jti belongs to one user; "
                "nothing was imported. Export the source again with this version of authx-epoch, or import "
                "without it and bump the global epoch so that no revoked token comes back"
            )
    return found

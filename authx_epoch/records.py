"""What a store keeps, as plain immutable values, and the epoch arithmetic on them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

#: Epochs are whole microseconds since the Unix epoch, or one more than the previous value.
EPOCH_SCALE = 1_000_000
#: The largest value a stamp may hold; larger claims are malformed (they would not fit SQLite).
MAX_EPOCH = 2**63 - 1


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


@dataclass(frozen=True, init=False)
class CheckState:
    """Everything one check needs from the store, fetched in one call.

    Attributes:
        user: The user's record, or ``None`` if the store has none (never created, expired or lost).
        global_: The global record, or ``None`` if the store has lost it.
        jti_revoked: Whether the token's ``jti`` is in the revoked set.
        session_revoked: Whether the token's session id is in the revoked set.
    """

    user: Optional[EpochRecord]
    global_: Optional[EpochRecord]
    jti_revoked: bool = False
    session_revoked: bool = False

    def __init__(
        self,
        user: Optional[EpochRecord],
        global_: Optional[EpochRecord],
        jti_revoked: bool = False,
        session_revoked: bool = False,
    ) -> None:
        # One is built for every request; the frozen dataclass's generated __init__ (one
        # object.__setattr__ per field) would be a third of what a check with the memory store
        # costs. Writing the instance dict once keeps it frozen to callers.
        fields = self.__dict__
        fields["user"] = user
        fields["global_"] = global_
        fields["jti_revoked"] = jti_revoked
        fields["session_revoked"] = session_revoked


@dataclass(frozen=True)
class Stamps:
    """The epochs written into a token when it is minted."""

    user_epoch: int
    global_epoch: int


@dataclass(frozen=True)
class StoreStats:
    """Counts of what a store holds right now (expired entries are not counted).

    Attributes:
        kind: The store's kind: ``memory``, ``sqlite``, ``redis`` or ``redis+cluster``.
        users: User records held.
        revoked_tokens: Revoked, unexpired token ids.
        revoked_sessions: Revoked, unexpired session ids.
    """

    kind: str
    users: int
    revoked_tokens: int
    revoked_sessions: int


#: When a mint has to extend a user record's life, it extends it this much further (seconds),
#: so that the next mints of the same user within the hour need no write at all.
RECORD_SLACK = 3600.0


@dataclass(frozen=True)
class SnapshotEntry:
    """One item of a store's exported state (see ``authx-epoch export``).

    Attributes:
        kind: ``user``, ``global``, ``token`` (a revoked jti) or ``session`` (a revoked session id).
        key: The user id, jti or session id (empty for the global record).
        record: The epoch record, for ``user`` and ``global``.
        expires_at: When a revoked id may be forgotten, for ``token`` and ``session``.
        uid: The user a revoked token belongs to, for ``token``.
    """

    kind: str
    key: str
    record: Optional[EpochRecord] = None
    expires_at: Optional[float] = None
    uid: Optional[str] = None


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

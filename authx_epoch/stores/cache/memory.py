"""What one process remembers: the parts its checks have read, and when each was confirmed.

``Memory`` answers a check only from parts confirmed less than ``staleness`` seconds ago (by a
monotonic clock, and at the store time asked for), drops the parts a change names, and is
cleared whenever the invalidation channel is not connected.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Optional

from authx_epoch.records import CheckState, EpochRecord, SessionRecord
from authx_epoch.stores.cache.changes import GLOBAL, SESSION, USER, Change, digest_of
from authx_epoch.stores.versions import UserView, Versions

#: The most revoked-or-not answers kept per user (an attacker may present any jti for a real user).
MAX_JTIS_PER_USER = 32
#: A user or session checked within this many staleness intervals is kept confirmed by
#: revalidations: each is confirmed at most ``2 * KEEP_WARM`` times per check it answers.
KEEP_WARM = 10
#: A user is confirmed by versions for at most this many staleness intervals after the store last
#: read it whole; then it is read again. A write that moves no version (a writer of an older
#: release, an edit by hand) is so seen within ``REREAD + 1`` intervals, never later.
REREAD = 60

#: A clock for the age of answers (never the wall clock).
MonotonicClock = Callable[[], float]

# A confirmed answer about one jti: (revoked, monotonic time of confirmation, the store's ``now`` it was read at).
_Jti = tuple[bool, float, float]
# The global record: (record or None, confirmed, now).
_Global = tuple[Optional[EpochRecord], float, float]


@dataclass(slots=True, eq=False)
class _User:
    """What is held of one user; replaced whole on a read, its times moved in place by a confirmation."""

    record: Optional[EpochRecord]
    confirmed: float
    #: The store's ``now`` it was read (or last confirmed) at.
    now: float
    #: Per-jti answers, for a user without a complete view.
    jtis: dict[str, _Jti]
    digest: bytes
    view: Optional[UserView]
    #: When a check last used it (monotonic): only recently used parts are revalidated.
    used: float
    #: When the store last read it whole (monotonic): confirmations stop ``REREAD`` intervals later.
    read: float
    #: The view's revoked jtis when it has them all (read on every hit, so kept at hand).
    revoked: Optional[Mapping[bytes, float]] = field(init=False)

    def __post_init__(self) -> None:
        self.revoked = self.view.revoked if self.view is not None else None


@dataclass(slots=True, eq=False)
class _Session:
    """What is held of one session; replaced whole, never changed but for ``used``."""

    revoked: bool
    record: Optional[SessionRecord]
    confirmed: float
    now: float
    digest: bytes
    used: float


@dataclass(frozen=True)
class Revalidation:
    """One confirmation of what is held: the parts it covers, as they were when it was claimed."""

    generation: int
    confirmed: float
    users: list[tuple[str, _User]]
    sessions: list[tuple[str, _Session]]

    @property
    def uids(self) -> list[str]:
        """The users to read the versions of."""
        return [uid for uid, _ in self.users]

    @property
    def session_ids(self) -> list[str]:
        """The sessions to read again."""
        return [session_id for session_id, _ in self.sessions]


class Memory:
    """The parts one process has read, and the rules for answering from them.

    Reads take no lock (a dict lookup is atomic); every change holds ``_lock``. ``generation``
    moves on every invalidation, so an answer read from the store before an invalidation is
    never remembered after it (it could be older than the change the invalidation announced).

    Over a versioned store, a user is held whole (its view: every revoked jti
    of it) and what recently answered a check is confirmed every ``staleness / 2`` seconds by one
    read of versions (``claim_revalidation``, then ``confirm``): a user whose version has not
    moved keeps answering past ``staleness`` (for ``REREAD`` intervals after its last whole read),
    and one whose version moved is dropped.
    """

    def __init__(self, staleness: float, max_entries: int, clock: MonotonicClock) -> None:
        self.staleness = staleness
        self.max_entries = max_entries
        self.clock = clock
        self.live = False
        self.generation = 0
        #: When the next revalidation is due (monotonic): never, unless the cache is over a
        #: versioned store (it then sets ``-inf``: due at the first check).
        self.next_revalidation = math.inf
        self._lock = threading.Lock()
        self._users: dict[str, _User] = {}
        self._sessions: dict[str, _Session] = {}
        self._global: Optional[_Global] = None
        self._user_of: dict[bytes, str] = {}
        self._session_of: dict[bytes, str] = {}

    def answer(self, uid: str, jti: Optional[str], session_id: Optional[str], now: float) -> Optional[CheckState]:
        """The check state from memory, or ``None`` when some part is missing or too old, or a revalidation is due."""
        if not self.live:
            return None
        clock = self.clock()
        if clock >= self.next_revalidation:
            return None
        staleness = self.staleness
        oldest = clock - staleness
        found = self._global
        # Both ages must be small: the monotonic one bounds staleness; the store-clock one keeps
        # a caller that moves ``now`` (tests, a clock jump) from reading answers for another time.
        if found is None or found[1] <= oldest or not -staleness < now - found[2] < staleness:
            return None
        user_part = self._users.get(uid)
        if user_part is None or user_part.confirmed <= oldest or not -staleness < now - user_part.now < staleness:
            return None
        jti_revoked = False
        if jti is not None:
            revoked = user_part.revoked
            if revoked is not None:
                # Most users have no revoked jti: no digest of the jti to compute then.
                if revoked:
                    until = user_part.view.revoked_until(jti)  # type: ignore[union-attr]
                    jti_revoked = until is not None and until > now
            else:
                jti_part = user_part.jtis.get(jti)
                if jti_part is None or jti_part[1] <= oldest or not -staleness < now - jti_part[2] < staleness:
                    return None
                jti_revoked = jti_part[0]
        session_revoked = False
        session = None
        if session_id is not None:
            session_part = self._sessions.get(session_id)
            if (
                session_part is None
                or session_part.confirmed <= oldest
                or not -staleness < now - session_part.now < staleness
            ):
                return None
            session_part.used = clock
            session_revoked, session = session_part.revoked, session_part.record
            if session is not None and not session.is_live(now):
                session = None
        user_part.used = clock
        user = user_part.record
        if user is not None and not user.is_live(now):
            user = None
        return CheckState(user, found[0], jti_revoked, session_revoked, session)

    def remember(
        self,
        generation: int,
        confirmed: float,
        uid: str,
        jti: Optional[str],
        session_id: Optional[str],
        now: float,
        state: CheckState,
        view: Optional[UserView] = None,
    ) -> None:
        """Keep what the store answered (and the ``view``), unless an invalidation arrived during the read."""
        with self._lock:
            if generation != self.generation or not self.live:
                return
            self._global = (state.global_, confirmed, now)
            staleness = self.staleness
            oldest = confirmed - staleness
            previous = self._users.pop(uid, None)
            jtis: dict[str, _Jti] = {}
            if previous is not None:
                digest = previous.digest
                # Answers about the user's other tokens stay while they are fresh and, over a
                # versioned store, only if the user's version has not moved since.
                same = view is None or (previous.view is not None and previous.view.version == view.version)
                if same:
                    jtis = {key: part for key, part in previous.jtis.items() if part[1] > oldest}
            else:
                digest = digest_of(uid)
                self._user_of[digest] = uid
            if view is not None and view.revoked is not None:
                jtis = {}
            elif jti is not None:
                jtis.pop(jti, None)
                jtis[jti] = (state.jti_revoked, confirmed, now)
            while len(jtis) > MAX_JTIS_PER_USER:
                del jtis[next(iter(jtis))]
            self._users[uid] = _User(state.user, confirmed, now, jtis, digest, view, confirmed, confirmed)
            self._trim(self._users, self._user_of)
            if session_id is not None:
                old_session = self._sessions.pop(session_id, None)
                if old_session is not None:
                    session_digest = old_session.digest
                else:
                    session_digest = digest_of(session_id)
                    self._session_of[session_digest] = session_id
                self._sessions[session_id] = _Session(
                    state.session_revoked, state.session, confirmed, now, session_digest, confirmed
                )
                self._trim(self._sessions, self._session_of)

    def claim_revalidation(self) -> Optional[Revalidation]:
        """The parts to confirm now, if a revalidation is due (and not already claimed by another check)."""
        with self._lock:
            clock = self.clock()
            if not self.live or clock < self.next_revalidation:
                return None
            self.next_revalidation = clock + self.staleness / 2
            warm = clock - KEEP_WARM * self.staleness
            fresh = clock - REREAD * self.staleness
            users = [
                (uid, part)
                for uid, part in self._users.items()
                if part.used > warm and part.read > fresh and part.view is not None and part.view.version is not None
            ]
            sessions = [(session_id, part) for session_id, part in self._sessions.items() if part.used > warm]
            if not users and not sessions:
                return None
            return Revalidation(self.generation, clock, users, sessions)

    def confirm(self, claimed: Revalidation, now: float, read: Versions) -> None:
        """Apply a read of versions: keep (as confirmed when claimed) what has not moved, drop what has.

        A part replaced or dropped since the claim is left as it is: it is newer than the read.
        """
        confirmed = claimed.confirmed
        with self._lock:
            if not self.live:
                return
            if claimed.generation == self.generation:
                # Only then: an own write since the claim dropped the global part, and the read may predate it.
                self._global = (read.global_, confirmed, now)
            for (uid, part), version in zip(claimed.users, read.users, strict=True):
                if self._users.get(uid) is not part:
                    continue
                if part.view is not None and version == part.view.version:
                    # In place: the state is unchanged, so a reader mixing the old and the new
                    # times still sees two true confirmations of it (and a new object per user
                    # would cost 8 ms per 10,000 users, under the lock).
                    if part.jtis:
                        part.jtis = {key: (answer[0], confirmed, now) for key, answer in part.jtis.items()}
                    part.now = now
                    part.confirmed = confirmed
                else:
                    del self._users[uid]
                    self._user_of.pop(part.digest, None)
            for (session_id, session_part), record in zip(claimed.sessions, read.sessions, strict=True):
                if self._sessions.get(session_id) is not session_part:
                    continue
                live = record if record is not None and record.expires_at > now else None
                self._sessions[session_id] = _Session(
                    live is not None and live.revoked, live, confirmed, now, session_part.digest, session_part.used
                )

    def _trim(self, entries: dict[str, Any], by_digest: dict[bytes, str]) -> None:
        # Oldest insertion first: an entry is refreshed (re-inserted) at most every ``staleness``
        # seconds, so insertion order is close to least-recently-confirmed order.
        while len(entries) > self.max_entries:
            oldest = next(iter(entries))
            by_digest.pop(entries.pop(oldest).digest, None)

    def forget(self, changes: Iterable[Change]) -> None:
        """Drop the parts the changes name."""
        with self._lock:
            self.generation += 1
            for kind, key in changes:
                if kind == USER:
                    uid = self._user_of.pop(key, None)
                    if uid is not None:
                        self._users.pop(uid, None)
                elif kind == SESSION:
                    session_id = self._session_of.pop(key, None)
                    if session_id is not None:
                        self._sessions.pop(session_id, None)
                elif kind == GLOBAL:
                    self._global = None
                else:
                    self._clear()

    def set_live(self, live: bool) -> None:
        """Clear everything, then allow (or stop) answers from memory."""
        with self._lock:
            self.generation += 1
            self._clear()
            self.live = live

    def reset_lock(self) -> None:
        """A new lock (in a forked child, where the parent's may be held forever)."""
        self._lock = threading.Lock()

    def _clear(self) -> None:
        self._users = {}
        self._sessions = {}
        self._global = None
        self._user_of = {}
        self._session_of = {}

    def size(self) -> tuple[int, int]:
        """How many users and sessions are held."""
        return len(self._users), len(self._sessions)

    def user_epoch_current(self, uid: str, epoch: int, expires_at: float) -> bool:
        """Whether a fresh part shows the user's record at ``epoch`` living until ``expires_at`` or later."""
        part = self._users.get(uid)
        if part is None or part.confirmed <= self.clock() - self.staleness or part.record is None:
            return False
        record = part.record
        return record.epoch == epoch and record.expires_at is not None and record.expires_at >= expires_at

    def global_epoch_current(self, epoch: int) -> bool:
        """Whether a fresh part shows the global record at ``epoch``."""
        part = self._global
        return (
            part is not None
            and part[1] > self.clock() - self.staleness
            and part[0] is not None
            and part[0].epoch == epoch
        )

"""What one process remembers: the parts its checks have read, and when each was confirmed.

``Memory`` answers a check only from parts confirmed less than ``staleness`` seconds ago (by a
monotonic clock, and at the store time asked for), drops the parts a change names, and is
cleared whenever the invalidation channel is not connected.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any, Optional

from authx_epoch.records import CheckState, EpochRecord, SessionRecord
from authx_epoch.stores.cache.changes import GLOBAL, SESSION, USER, Change, digest_of

#: The most revoked-or-not answers kept per user (an attacker may present any jti for a real user).
MAX_JTIS_PER_USER = 32

#: A clock for the age of answers (never the wall clock).
MonotonicClock = Callable[[], float]

# A confirmed part: (value, monotonic time of confirmation, the store's ``now`` it was read at).
_Jti = tuple[bool, float, float]
# A user: (record or None, confirmed, now, {jti: _Jti}, digest of the uid).
_User = tuple[Optional[EpochRecord], float, float, dict[str, _Jti], bytes]
# A session: (revoked, record or None, confirmed, now, digest of the session id).
_Session = tuple[bool, Optional[SessionRecord], float, float, bytes]
_Global = tuple[Optional[EpochRecord], float, float]


class Memory:
    """The parts one process has read, and the rules for answering from them.

    Reads take no lock (a dict lookup is atomic); every change holds ``_lock``. ``generation``
    moves on every invalidation, so an answer read from the store before an invalidation is
    never remembered after it (it could be older than the change the invalidation announced).
    """

    def __init__(self, staleness: float, max_entries: int, clock: MonotonicClock) -> None:
        self.staleness = staleness
        self.max_entries = max_entries
        self.clock = clock
        self.live = False
        self.generation = 0
        self._lock = threading.Lock()
        self._users: dict[str, _User] = {}
        self._sessions: dict[str, _Session] = {}
        self._global: Optional[_Global] = None
        self._user_of: dict[bytes, str] = {}
        self._session_of: dict[bytes, str] = {}

    def answer(self, uid: str, jti: Optional[str], session_id: Optional[str], now: float) -> Optional[CheckState]:
        """The check state from memory, or ``None`` when some part is missing or too old."""
        if not self.live:
            return None
        staleness = self.staleness
        oldest = self.clock() - staleness
        found = self._global
        # Both ages must be small: the monotonic one bounds staleness; the store-clock one keeps
        # a caller that moves ``now`` (tests, a clock jump) from reading answers for another time.
        if found is None or found[1] <= oldest or not -staleness < now - found[2] < staleness:
            return None
        user_part = self._users.get(uid)
        if user_part is None or user_part[1] <= oldest or not -staleness < now - user_part[2] < staleness:
            return None
        jti_revoked = False
        if jti is not None:
            jti_part = user_part[3].get(jti)
            if jti_part is None or jti_part[1] <= oldest or not -staleness < now - jti_part[2] < staleness:
                return None
            jti_revoked = jti_part[0]
        session_revoked = False
        session = None
        if session_id is not None:
            session_part = self._sessions.get(session_id)
            if session_part is None or session_part[2] <= oldest or not -staleness < now - session_part[3] < staleness:
                return None
            session_revoked, session = session_part[0], session_part[1]
            if session is not None and not session.is_live(now):
                session = None
        user = user_part[0]
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
    ) -> None:
        """Keep what the store answered, unless an invalidation arrived while it was being read."""
        with self._lock:
            if generation != self.generation or not self.live:
                return
            self._global = (state.global_, confirmed, now)
            staleness = self.staleness
            oldest = confirmed - staleness
            previous = self._users.pop(uid, None)
            jtis: dict[str, _Jti] = {}
            if previous is not None:
                digest = previous[4]
                # Answers about the user's other tokens stay, as long as they are fresh.
                jtis = {key: part for key, part in previous[3].items() if part[1] > oldest}
            else:
                digest = digest_of(uid)
                self._user_of[digest] = uid
            if jti is not None:
                jtis.pop(jti, None)
                jtis[jti] = (state.jti_revoked, confirmed, now)
            while len(jtis) > MAX_JTIS_PER_USER:
                del jtis[next(iter(jtis))]
            self._users[uid] = (state.user, confirmed, now, jtis, digest)
            self._trim(self._users, self._user_of, 4)
            if session_id is not None:
                old_session = self._sessions.pop(session_id, None)
                if old_session is not None:
                    session_digest = old_session[4]
                else:
                    session_digest = digest_of(session_id)
                    self._session_of[session_digest] = session_id
                self._sessions[session_id] = (state.session_revoked, state.session, confirmed, now, session_digest)
                self._trim(self._sessions, self._session_of, 4)

    def _trim(self, entries: dict[str, Any], by_digest: dict[bytes, str], digest_at: int) -> None:
        # Oldest insertion first: an entry is refreshed (re-inserted) at most every ``staleness``
        # seconds, so insertion order is close to least-recently-confirmed order.
        while len(entries) > self.max_entries:
            oldest = next(iter(entries))
            by_digest.pop(entries.pop(oldest)[digest_at], None)

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
        if part is None or part[1] <= self.clock() - self.staleness or part[0] is None:
            return False
        record = part[0]
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

"""``memory://``: one process's dictionaries. For tests and development, not for several workers."""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterable
from dataclasses import replace
from itertools import islice
from typing import Optional

from authx_epoch.records import (
    RECORD_SLACK,
    CheckState,
    EpochRecord,
    RotationOutcome,
    SessionRecord,
    SnapshotEntry,
    Stamps,
    StoreStats,
    clock_epoch,
    ensure_session,
    merge_records,
    merge_sessions,
    next_epoch,
    owned_entries,
    revoke_session_record,
    rotate,
)
from authx_epoch.stores.contract import Store
from authx_epoch.stores.namespaces import ROOT_NAMESPACE, check_namespace

#: How many expired entries one write sweeps away, so memory stays bounded without a cleanup job.
_SWEEP = 16


class _Namespace:
    """What one namespace holds.

    A revoked jti is per user: ``tokens[jti][uid]`` is when that user's revocation of ``jti``
    expires. Keyed by jti first, so the check of a token whose jti nobody revoked (nearly every
    check) is one dictionary miss, with nothing built for the lookup.
    """

    __slots__ = ("global_", "sessions", "tokens", "users")

    def __init__(self) -> None:
        self.users: dict[str, EpochRecord] = {}
        self.global_: Optional[EpochRecord] = None
        self.tokens: dict[str, dict[str, float]] = {}
        self.sessions: dict[str, SessionRecord] = {}


class MemoryStore(Store):
    """A store held in this process's memory.

    State is lost when the process ends and is not shared with other workers: use SQLite or
    Redis for anything that runs more than one process. Expired entries are ignored on read and
    swept a few at a time on every write, so no cleanup task is needed.

    Each namespace has its own state inside the object; ``with_namespace`` views share the
    object's dictionary of namespaces and its lock.

    Args:
        namespace: The namespace this object works in (``""``: the root).
    """

    kind = "memory"

    def __init__(self, *, namespace: str = ROOT_NAMESPACE) -> None:
        """Create an empty store."""
        self._lock = threading.Lock()
        self._namespaces: dict[str, _Namespace] = {}
        self._bind(check_namespace(namespace))

    def _bind(self, namespace: str) -> None:
        with self._lock:
            state = self._namespaces.setdefault(namespace, _Namespace())
        self._namespace = namespace
        self._state = state
        # The namespace's dictionaries, bound once: a check is then three dictionary lookups.
        self._users = state.users
        self._tokens = state.tokens
        self._sessions = state.sessions

    @property
    def namespace(self) -> str:
        """The namespace this object works in (``""``: the root)."""
        return self._namespace

    @property
    def location(self) -> str:
        """``memory://<id>``: the same for this object and every view of it, different for any other."""
        return f"memory://{id(self._namespaces):x}"

    def with_namespace(self, namespace: str) -> Store:
        """A view of this store's data in ``namespace`` (same dictionaries and lock); see ``Store``."""
        view = copy.copy(self)
        view._bind(check_namespace(namespace))
        return view

    def setup(self, now: float) -> EpochRecord:
        """See ``Store.setup``."""
        with self._lock:
            state = self._state
            if state.global_ is None:
                state.global_ = EpochRecord(epoch=clock_epoch(now), created_at=now)
            return state.global_

    def fetch(self, uid: str, jti: Optional[str], session_id: Optional[str], now: float) -> CheckState:
        """See ``Store.fetch``."""
        user = self._users.get(uid)
        if user is not None and not user.is_live(now):
            user = None
        owners = self._tokens.get(jti) if jti is not None else None
        jti_until = owners.get(uid) if owners is not None else None
        session = self._sessions.get(session_id) if session_id is not None else None
        if session is not None and not session.expires_at > now:
            session = None
        return CheckState(
            user,
            self._state.global_,
            jti_until is not None and jti_until > now,
            session is not None and session.revoked,
            session,
        )

    def issue(self, uid: str, now: float, expires_at: float, session_id: Optional[str] = None) -> Stamps:
        """See ``Store.issue``."""
        with self._lock:
            state = self._state
            generation = None
            if session_id is not None:
                current = self._sessions.get(session_id)
                # First, before any write: it refuses a session of another user.
                changed = ensure_session(current, uid, now, expires_at, expires_at + RECORD_SLACK)
                if changed is not None:
                    self._sessions[session_id] = current = changed
                    self._sweep(now)
                assert current is not None
                generation = current.generation
            if state.global_ is None:
                state.global_ = EpochRecord(epoch=clock_epoch(now), created_at=now)
            user = self._users.get(uid)
            if user is None or not user.is_live(now):
                user = EpochRecord(epoch=clock_epoch(now), created_at=now, expires_at=expires_at)
                self._users[uid] = user
                self._sweep(now)
            elif user.expires_at is not None and user.expires_at < expires_at:
                user = replace(user, expires_at=expires_at)
                self._users[uid] = user
            return Stamps(user_epoch=user.epoch, global_epoch=state.global_.epoch, session_generation=generation)

    def rotate_session(
        self, session_id: str, uid: str, presented_generation: int, now: float, grace: float, expires_at: float
    ) -> RotationOutcome:
        """See ``Store.rotate_session``."""
        with self._lock:
            current = self._sessions.get(session_id)
            outcome, write = rotate(current, uid, presented_generation, now, grace, expires_at)
            if write is not None:
                self._sessions[session_id] = write
            return outcome

    def get_session(self, session_id: str, now: float) -> Optional[SessionRecord]:
        """See ``Store.get_session``."""
        session = self._sessions.get(session_id)
        return session if session is not None and session.is_live(now) else None

    def bump_user(self, uid: str, now: float, reason: Optional[str], expires_at: float) -> EpochRecord:
        """See ``Store.bump_user``."""
        with self._lock:
            old = self._users.get(uid)
            if old is not None and not old.is_live(now):
                old = None
            record = EpochRecord(
                epoch=next_epoch(old.epoch if old else None, now),
                created_at=old.created_at if old else now,
                bumped_at=now,
                reason=reason,
                expires_at=max(expires_at, old.expires_at or 0.0) if old else expires_at,
            )
            self._users[uid] = record
            self._sweep(now)
            return record

    def bump_global(self, now: float, reason: Optional[str]) -> EpochRecord:
        """See ``Store.bump_global``."""
        with self._lock:
            state = self._state
            old = state.global_
            state.global_ = EpochRecord(
                epoch=next_epoch(old.epoch if old else None, now),
                created_at=old.created_at if old else now,
                bumped_at=now,
                reason=reason,
            )
            return state.global_

    def revoke_token(self, uid: str, jti: str, expires_at: float, now: float) -> None:
        """See ``Store.revoke_token``."""
        with self._lock:
            owners = self._tokens.setdefault(jti, {})
            owners[uid] = max(expires_at, owners.get(uid, 0.0))
            self._sweep(now)

    def revoke_session(self, session_id: str, expires_at: float, now: float, uid: Optional[str] = None) -> bool:
        """See ``Store.revoke_session``."""
        with self._lock:
            current = self._sessions.get(session_id)
            known = current is not None and current.is_live(now)
            self._sessions[session_id] = revoke_session_record(current, now, expires_at, uid)
            self._sweep(now)
            return known

    def get_user(self, uid: str, now: float) -> Optional[EpochRecord]:
        """See ``Store.get_user``."""
        user = self._users.get(uid)
        return user if user is not None and user.is_live(now) else None

    def get_global(self, now: float) -> Optional[EpochRecord]:
        """See ``Store.get_global``."""
        return self._state.global_

    def stats(self, now: float) -> StoreStats:
        """See ``Store.stats``."""
        with self._lock:
            return StoreStats(
                kind=self.kind,
                users=sum(1 for record in self._users.values() if record.is_live(now)),
                revoked_tokens=sum(1 for owners in self._tokens.values() for until in owners.values() if until > now),
                revoked_sessions=sum(1 for s in self._sessions.values() if s.revoked and s.is_live(now)),
                sessions=sum(1 for s in self._sessions.values() if s.is_live(now)),
            )

    def export_entries(self, now: float) -> list[SnapshotEntry]:
        """See ``Store.export_entries``."""
        with self._lock:
            global_ = self._state.global_
            entries = [SnapshotEntry("global", "", record=global_)] if global_ else []
            entries += [SnapshotEntry("user", uid, record=r) for uid, r in self._users.items() if r.is_live(now)]
            entries += [
                SnapshotEntry("token", jti, expires_at=until, uid=uid)
                for jti, owners in self._tokens.items()
                for uid, until in owners.items()
                if until > now
            ]
            entries += [
                SnapshotEntry("session", sid, expires_at=s.expires_at, session=s)
                for sid, s in self._sessions.items()
                if s.is_live(now)
            ]
        return entries

    def import_entries(self, entries: Iterable[SnapshotEntry], now: float) -> int:
        """See ``Store.import_entries``."""
        count = 0
        checked = owned_entries(entries)
        with self._lock:
            state = self._state
            for entry in checked:
                if entry.kind == "global" and entry.record is not None:
                    state.global_ = merge_records(state.global_, entry.record)
                elif entry.kind == "user" and entry.record is not None:
                    self._users[entry.key] = merge_records(self._users.get(entry.key), entry.record)
                elif entry.kind == "token" and entry.expires_at is not None and entry.uid is not None:
                    owners = self._tokens.setdefault(entry.key, {})
                    owners[entry.uid] = max(entry.expires_at, owners.get(entry.uid, 0.0))
                elif entry.kind == "session" and entry.session is not None:
                    if not entry.session.is_live(now):
                        continue
                    self._sessions[entry.key] = merge_sessions(self._sessions.get(entry.key), entry.session, now)
                elif entry.kind == "session" and entry.expires_at is not None:
                    if entry.expires_at <= now:
                        continue
                    current = self._sessions.get(entry.key)
                    self._sessions[entry.key] = revoke_session_record(current, now, entry.expires_at)
                else:
                    continue
                count += 1
        return count

    def wipe(self) -> None:
        """See ``Store.wipe`` (this namespace only)."""
        with self._lock:
            self._users.clear()
            self._tokens.clear()
            self._sessions.clear()
            self._state.global_ = None

    def close(self) -> None:
        """Nothing to release."""

    def _sweep(self, now: float) -> None:
        # A rotating sweep: look at the oldest few entries of each map, drop the expired ones and
        # move the live ones to the back, so every entry is visited in turn and the maps stay near
        # the size of their live entries without a cleanup task.
        tokens = self._tokens
        for jti in list(islice(tokens, _SWEEP)):
            owners = {uid: until for uid, until in tokens.pop(jti).items() if until > now}
            if owners:
                tokens[jti] = owners
        sessions = self._sessions
        for sid in list(islice(sessions, _SWEEP)):
            session = sessions.pop(sid)
            if session.is_live(now):
                sessions[sid] = session
        for uid in list(islice(self._users, _SWEEP)):
            record = self._users.pop(uid)
            if record.is_live(now):
                self._users[uid] = record

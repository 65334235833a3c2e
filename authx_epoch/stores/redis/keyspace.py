"""The keys and script calls of one Redis store, and the reading of every answer. Pure, no I/O.

Both Redis twins (blocking and asyncio) and both deployments (one Redis, Redis Cluster) share
this module; they only send what it builds and hand back what Redis answered.
The key layout is described in ``keys``, the values in ``values``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from typing import Optional, Union

import msgpack

from authx_epoch.errors import SessionOwnerError
from authx_epoch.records import (
    RECORD_SLACK,
    CheckState,
    EpochRecord,
    RotationOutcome,
    RotationStatus,
    SessionRecord,
    SnapshotEntry,
    Stamps,
    StoreStats,
    clock_epoch,
    merge_records,
    merge_sessions,
)
from authx_epoch.stores.namespaces import ROOT_NAMESPACE, check_namespace, namespaced_prefix
from authx_epoch.stores.redis.keys import (
    DEFAULT_PREFIX,
    RECORD_FIELD,
    UID_FIELD,
    check_prefix,
    digest,
    glob_escape,
    id_bytes,
)
from authx_epoch.stores.redis.scripts import BUMP, CHECK, ISSUE, REPLACE, REVOKE, SESSION, SETUP, Call
from authx_epoch.stores.redis.values import (
    Scanned,
    UnreadableValueError,
    Value,
    absent,
    decode_record,
    decode_session,
    encode_record,
    encode_revoked,
    encode_session,
    id_text,
    live,
    pack,
    record_uid,
    revoked_until,
    session_id_of,
    unpack,
)


class KeySpace:
    """Builds every key and script call of one store, and decodes every answer.

    Args:
        prefix: The prefix of this store's keys; several apps can share one Redis with different
            prefixes. It may contain neither braces (they would change Cluster hash slots) nor
            ``~`` (it separates namespaces).
        cluster: Whether the keys live on a Redis Cluster, where a script may only touch the keys
            of one hash slot.
        namespace: The namespace of the keys (``""``: the root, keys under ``prefix:``; else
            under ``prefix~namespace:``).
    """

    def __init__(self, prefix: str = DEFAULT_PREFIX, *, cluster: bool = False, namespace: str = ROOT_NAMESPACE) -> None:
        """Validate ``prefix`` and ``namespace`` and precompute the fixed keys."""
        self.prefix = check_prefix(prefix)
        self.cluster = cluster
        self.namespace = check_namespace(namespace)
        #: The prefix of this namespace's keys and of its local-cache channel.
        self.keys_prefix = namespaced_prefix(prefix, self.namespace)
        self._p = id_bytes(self.keys_prefix) + b":"
        self.global_key = self._p + b"g"
        #: Written for an instant by each check connection, to see tracking work (``pipe``): under
        #: the prefix, where an ACL limiting the store's keys allows it, and of no entry's kind.
        self.probe_key = id_bytes(self.prefix) + b":tracking-probe"
        self.pattern = glob_escape(self._p) + b"*"

    def with_namespace(self, namespace: str) -> KeySpace:
        """The same keys in another namespace."""
        return KeySpace(self.prefix, cluster=self.cluster, namespace=namespace)

    # -- keys ------------------------------------------------------------------------------

    def user_key(self, uid: str) -> bytes:
        """The key of ``uid``'s hash: the user's record and revoked jtis."""
        # ":h", not the ":u" of the string records written before the hash: an old key is
        # simply not found (its users log in again), never misread.
        return self._p + b"{" + digest(uid) + b"}:h"

    @staticmethod
    def token_field(jti: str) -> bytes:
        """The field of a revoked ``jti`` in its owner's hash."""
        return b"j:" + digest(jti)

    def session_key(self, session_id: str) -> bytes:
        """The key of a session's record."""
        return self._p + b"s:" + digest(session_id)

    def kind_of(self, key: bytes) -> Optional[str]:
        """Which entry a key under the prefix holds: ``global``, ``user``, ``session`` or ``None``."""
        if not key.startswith(self._p):
            return None
        rest = key[len(self._p) :]
        if rest == b"g":
            return "global"
        if rest.startswith(b"s:") and len(rest) == 45:
            return "session"
        if rest.startswith(b"{") and rest[44:45] == b"}" and rest[45:] == b":h":
            return "user"
        return None

    def split_scanned(self, keys: Iterable[bytes]) -> tuple[list[bytes], list[bytes]]:
        """Split scanned keys into users' hashes (read with ``HGETALL``) and plain values (``MGET``)."""
        hashes: list[bytes] = []
        plain: list[bytes] = []
        for key in keys:
            kind = self.kind_of(key)
            if kind == "user":
                hashes.append(key)
            elif kind is not None:
                plain.append(key)
        return hashes, plain

    # -- the check -------------------------------------------------------------------------

    def check_call(self, uid: str, jti: Optional[str], session_id: Optional[str]) -> Call:
        """One check on a single Redis: one read-only script over the user, global and session keys."""
        keys = [self.user_key(uid), self.global_key]
        if session_id is not None:
            keys.append(self.session_key(session_id))
        return Call(CHECK, keys, [self.token_field(jti) if jti is not None else b""])

    def check_state(self, values: Sequence[Value], now: float) -> CheckState:
        """Turn ``[user record, revoked jti entry, global record, session record]`` into what the decision needs.

        On a single Redis that is the answer of ``check_call``; on Cluster the caller assembles it
        from the reads of the user's slot, the global record and the session record.
        """
        jti_until = revoked_until(values[1])
        session = decode_session(values[3])
        if session is not None and not session.expires_at > now:
            session = None
        return CheckState(
            live(decode_record(values[0]), now),
            decode_record(values[2]),
            jti_until is not None and jti_until > now,
            session is not None and session.revoked,
            session,
        )

    # -- writes ----------------------------------------------------------------------------

    def setup_call(self, now: float) -> Call:
        """Create the global record if missing; the script returns it."""
        return Call(SETUP, [self.global_key], [pack([str(clock_epoch(now)), now])])

    def issue_call(self, uid: str, now: float, expires_at: float, session_id: Optional[str] = None) -> Call:
        """Ensure the user's record lives until ``expires_at``; on one Redis, the global and session records too.

        On Cluster the global record and the session record live in other slots: send
        ``setup_call`` and ``ensure_session_call`` alongside.
        """
        keys = [self.user_key(uid)]
        with_session = session_id is not None and not self.cluster
        if not self.cluster:
            keys.append(self.global_key)
        if with_session:
            assert session_id is not None
            keys.append(self.session_key(session_id))
        args = pack(
            [
                str(clock_epoch(now)),
                now,
                expires_at,
                expires_at + RECORD_SLACK,
                uid,
                not self.cluster,
                session_id if with_session else False,
            ]
        )
        return Call(ISSUE, keys, [args])

    def ensure_session_call(self, uid: str, session_id: str, now: float, expires_at: float) -> Call:
        """Ensure a session's record lives until ``expires_at`` (on Cluster, next to ``issue_call``)."""
        args = pack([str(clock_epoch(now)), now, expires_at, expires_at + RECORD_SLACK, uid, session_id])
        return Call(SESSION, [self.session_key(session_id)], [b"ensure", args])

    @staticmethod
    def ensured_session(answer: Sequence[Value]) -> Value:
        """The session value from the answer of ``ensure_session_call``.

        Raises:
            SessionOwnerError: The session belongs to another user (the script wrote nothing).
        """
        if answer[0] == b"owner":
            raise SessionOwnerError()
        return answer[1]

    def stamps(self, answer: Sequence[Value], global_raw: Value = None, session_raw: Value = None) -> Stamps:
        """The stamps from the answer of ``issue_call`` (on Cluster, also ``setup_call``, ``ensured_session``).

        Raises:
            SessionOwnerError: The session belongs to another user (the script wrote nothing).
        """
        if len(answer) > 3 and answer[3] == b"owner":
            raise SessionOwnerError()
        user = decode_record(answer[0])
        global_ = decode_record(answer[1] if not self.cluster else global_raw)
        if user is None or global_ is None:
            raise UnreadableValueError("Redis answered an unreadable record")
        raw_session = answer[2] if not self.cluster and len(answer) > 2 else session_raw
        session = decode_session(raw_session) if raw_session else None
        return Stamps(
            user_epoch=user.epoch,
            global_epoch=global_.epoch,
            session_generation=session.generation if session is not None else None,
        )

    def bump_user_call(self, uid: str, now: float, reason: Optional[str], expires_at: float) -> Call:
        """Atomically bump ``uid``'s epoch."""
        return Call(BUMP, [self.user_key(uid)], [pack([str(clock_epoch(now)), now, reason, expires_at, uid])])

    def bump_global_call(self, now: float, reason: Optional[str]) -> Call:
        """Atomically bump the global epoch."""
        return Call(BUMP, [self.global_key], [pack([str(clock_epoch(now)), now, reason, None, None])])

    def revoke_token_call(self, uid: str, jti: str, expires_at: float, now: float) -> Call:
        """Put ``jti`` of ``uid`` in the user's hash until ``expires_at``."""
        args: list[Union[bytes, str]] = [
            encode_revoked(expires_at, jti),
            self.token_field(jti),
            repr(float(now)),
            id_bytes(uid),
        ]
        return Call(REVOKE, [self.user_key(uid)], args)

    def revoke_session_call(self, session_id: str, expires_at: float, now: float, uid: Optional[str] = None) -> Call:
        """Mark the session's record revoked until at least ``expires_at`` (creating it revoked if missing).

        With ``uid``, a live record of another user is left alone (see ``revocation``).
        """
        args = pack([str(clock_epoch(now)), now, float(expires_at), session_id, uid if uid is not None else False])
        return Call(SESSION, [self.session_key(session_id)], [b"revoke", args])

    @staticmethod
    def revocation(answer: Sequence[Value]) -> bool:
        """Whether the session was known, from the answer of ``revoke_session_call``.

        Raises:
            SessionOwnerError: The session belongs to another user (the script wrote nothing).
        """
        if answer[0] == b"owner":
            raise SessionOwnerError()
        return answer[0] == b"known"

    def rotate_session_call(
        self, session_id: str, uid: str, presented: int, now: float, grace: float, expires_at: float
    ) -> Call:
        """Rotate a session of ``uid`` atomically (see ``records.rotate``; the script mirrors it)."""
        args = pack([str(clock_epoch(now)), now, str(presented), float(grace), float(expires_at), uid])
        return Call(SESSION, [self.session_key(session_id)], [b"rotate", args])

    @staticmethod
    def rotation(answer: Sequence[Value]) -> RotationOutcome:
        """The outcome from the answer of ``rotate_session_call``."""
        status = answer[0].decode() if isinstance(answer[0], bytes) else str(answer[0])
        try:
            return RotationOutcome(RotationStatus(status), decode_session(answer[1]) if answer[1] else None)
        except ValueError as exc:
            raise UnreadableValueError(f"Redis answered an unknown rotation status {status!r:.40}") from exc

    @staticmethod
    def session_of(raw: Value, now: float) -> Optional[SessionRecord]:
        """A session value as a live record, or ``None``."""
        session = decode_session(raw)
        return session if session is not None and session.is_live(now) else None

    def record_of(self, raw: Value) -> EpochRecord:
        """The record a write script returned."""
        record = decode_record(raw)
        if record is None:
            raise UnreadableValueError("Redis answered an unreadable record")
        return record

    # -- import ----------------------------------------------------------------------------

    def import_key(self, entry: SnapshotEntry, now: float) -> Optional[tuple[bytes, Optional[bytes]]]:
        """The key (and hash field) an imported record goes to, or ``None`` for an entry that is not a record.

        An expired session record goes nowhere (nor to ``revoke_call_for``): it is skipped.
        """
        if entry.kind == "session" and entry.session is not None:
            return (self.session_key(entry.key), None) if entry.session.is_live(now) else None
        if entry.record is None:
            return None
        if entry.kind == "global":
            return self.global_key, None
        if entry.kind == "user":
            return self.user_key(entry.key), RECORD_FIELD
        return None

    def revoke_call_for(self, entry: SnapshotEntry, now: float) -> Optional[Call]:
        """The write that imports a revoked id, or ``None`` if the entry is not one."""
        if entry.expires_at is None:
            return None
        if entry.kind == "token" and entry.uid is not None:
            return self.revoke_token_call(entry.uid, entry.key, entry.expires_at, now)
        if entry.kind == "session" and entry.session is None:
            return self.revoke_session_call(entry.key, entry.expires_at, now)
        return None

    def merge_call(
        self, entry: SnapshotEntry, key: bytes, current: Value, now: float, field: Optional[bytes] = None
    ) -> Call:
        """A compare-and-set of ``key`` (its hash ``field``) from ``current`` to ``current`` merged with ``entry``."""
        if entry.session is not None:
            session = merge_sessions(decode_session(current), entry.session, now)
            # A damaged value reads as revoked forever, and stays so: no expiry then.
            until = repr(float(session.expires_at)) if math.isfinite(session.expires_at) else ""
            value = encode_session(session, entry.key)
            return Call(REPLACE, [key], [current or b"", value, until, repr(float(now)), b""])
        assert entry.record is not None
        old = live(decode_record(current), now)
        merged = merge_records(old, entry.record)
        args: list[Union[bytes, str]] = [
            current or b"",
            encode_record(merged),
            "" if merged.expires_at is None else repr(float(merged.expires_at)),
            repr(float(now)),
            field or b"",
        ]
        if entry.kind == "user":
            args.append(id_bytes(entry.key))
        return Call(REPLACE, [key], args)

    # -- listing ---------------------------------------------------------------------------

    def tally(self, items: Iterable[tuple[bytes, Scanned]], now: float, kind: str) -> StoreStats:
        """Count the live entries among scanned ``(key, value)`` pairs."""
        counts = {"user": 0, "token": 0, "session": 0, "sessions": 0}
        for key, raw in items:
            key_kind = self.kind_of(key)
            if key_kind == "user" and isinstance(raw, dict):
                record = live(decode_record(raw.get(RECORD_FIELD)), now)
                counts["user"] += record is not None
                counts["token"] += sum(
                    1 for field, value in raw.items() if field.startswith(b"j:") and (revoked_until(value) or 0.0) > now
                )
            elif key_kind == "session" and isinstance(raw, bytes):
                session = self.session_of(raw, now)
                if session is not None:
                    counts["sessions"] += 1
                    counts["session"] += session.revoked
        return StoreStats(
            kind=kind,
            users=counts["user"],
            revoked_tokens=counts["token"],
            revoked_sessions=counts["session"],
            sessions=counts["sessions"],
        )

    def entries(self, items: Iterable[tuple[bytes, Scanned]], now: float) -> Iterator[SnapshotEntry]:
        """The live snapshot entries among scanned ``(key, value)`` pairs (sessions live or revoked)."""
        for key, raw in items:
            kind = self.kind_of(key)
            if kind is None or raw is None:
                continue
            if kind == "global" and isinstance(raw, bytes):
                record = decode_record(raw)
                if record is not None:
                    yield SnapshotEntry("global", "", record=record)
            elif kind == "user" and isinstance(raw, dict):
                yield from self._user_entries(raw, now)
            elif kind == "session" and isinstance(raw, bytes):
                session = self.session_of(raw, now)
                sid = session_id_of(raw)
                if session is not None and sid is not None:
                    yield SnapshotEntry("session", sid, expires_at=session.expires_at, session=session)

    def _user_entries(self, fields: dict[bytes, bytes], now: float) -> Iterator[SnapshotEntry]:
        raw_record = fields.get(RECORD_FIELD)
        # Field 'u' names the user; a hash last written by 0.1 has the id in its values instead.
        uid = id_text(fields.get(UID_FIELD))
        if raw_record is not None:
            record = live(decode_record(raw_record), now)
            owner = uid if uid is not None else record_uid(raw_record)
            if record is not None and owner is not None:
                yield SnapshotEntry("user", owner, record=record)
        for field, value in fields.items():
            if not field.startswith(b"j:"):
                continue
            try:
                entry = unpack(value)
                until, ident = float(entry[0]), entry[1]
                owner = uid if uid is not None else absent(entry[2]) if len(entry) > 2 else None
            except (ValueError, TypeError, IndexError, msgpack.UnpackException):
                continue
            if until > now and isinstance(ident, str):
                yield SnapshotEntry("token", ident, expires_at=until, uid=owner if isinstance(owner, str) else None)

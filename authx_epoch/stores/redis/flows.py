"""The store contract's operations on Redis, each written once as a flow of requests.

``RedisFlows`` decides what each operation asks of Redis and what the answers mean;
``RedisStore`` adds the clients that do the requests, on the blocking side or the asyncio one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from typing import Any, Optional

from redis.exceptions import RedisClusterException, RedisError

from authx_epoch.errors import StoreUnavailableError
from authx_epoch.records import (
    CheckState,
    EpochRecord,
    RotationOutcome,
    SessionRecord,
    SnapshotEntry,
    Stamps,
    StoreStats,
    owned_entries,
)
from authx_epoch.stores.contract import Flow, Store
from authx_epoch.stores.redis.keys import RECORD_FIELD
from authx_epoch.stores.redis.keyspace import KeySpace
from authx_epoch.stores.redis.requests import Command, Eval, ScanBatch, Together
from authx_epoch.stores.redis.values import Scanned, UnreadableValueError, Value
from authx_epoch.stores.redis.views import (
    cluster_versions_of,
    cluster_versions_reads,
    versions_calls,
    versions_of,
    view_call,
    view_state,
)
from authx_epoch.stores.versions import UserView, Versions

_ERRORS = (RedisError, RedisClusterException, OSError, asyncio.TimeoutError, UnreadableValueError)


class _unavailable:  # noqa: N801 - used like the function-style context managers it replaced
    """Turn a Redis error inside the block into ``StoreUnavailableError`` naming ``what``.

    A plain context manager also works around awaits, so both twins share it. A class rather
    than ``@contextmanager``: it is entered on every check, and a generator-based one costs
    about 2 µs more there.
    """

    __slots__ = ("what",)

    def __init__(self, what: str) -> None:
        self.what = what

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Optional[type[BaseException]], exc: Optional[BaseException], trace: Any) -> None:
        if exc is not None and isinstance(exc, _ERRORS):
            raise StoreUnavailableError(f"Redis store unavailable ({self.what}): {type(exc).__name__}: {exc}") from exc


def _cluster_reads(keys: KeySpace, uid: str, jti: Optional[str], session_id: Optional[str]) -> list[tuple[Any, ...]]:
    """The commands one check sends on Cluster, one per key: user's hash, global record, session record."""
    fields = [RECORD_FIELD, keys.token_field(jti)] if jti is not None else [RECORD_FIELD]
    reads: list[tuple[Any, ...]] = [("hmget", keys.user_key(uid), fields), ("get", keys.global_key)]
    if session_id is not None:
        reads.append(("get", keys.session_key(session_id)))
    return reads


def _cluster_values(answers: Sequence[Any], jti: Optional[str]) -> list[Value]:
    """The answers of ``_cluster_reads`` in the order ``KeySpace.check_state`` reads them."""
    user = answers[0]
    return [user[0], user[1] if jti is not None else None, answers[1], answers[2] if len(answers) > 2 else None]


class RedisFlows(Store):
    """The operations of ``Store`` on Redis, as flows of requests; ``RedisStore`` does the requests.

    Each operation reads ``self._keys`` (the keys and calls of this store's namespace) and yields
    ``Eval``, ``Command``, ``Together`` or ``ScanBatch`` requests.
    """

    kind: str
    _keys: KeySpace
    #: Every write script moves the user's version (``touch`` in ``lua/common.lua``).
    versioned = True

    def setup(self, now: float) -> Flow[EpochRecord]:
        """See ``Store.setup``."""
        with _unavailable("setup"):
            return self._keys.record_of((yield Eval(self._keys.setup_call(now))))

    def fetch(self, uid: str, jti: Optional[str], session_id: Optional[str], now: float) -> Flow[CheckState]:
        """See ``Store.fetch``: one read-only script, or on Cluster one command per key sent at once."""
        keys = self._keys
        with _unavailable("check"):
            if not keys.cluster:
                values = yield Eval(keys.check_call(uid, jti, session_id), read_only=True)
            else:
                reads = _cluster_reads(keys, uid, jti, session_id)
                values = _cluster_values(
                    (yield Together(tuple(Command(name, tuple(args)) for name, *args in reads))), jti
                )
            return keys.check_state(values, now)

    def fetch_view(
        self, uid: str, jti: Optional[str], session_id: Optional[str], now: float
    ) -> Flow[tuple[CheckState, UserView]]:
        """See ``Store.fetch_view``: one read-only script, or on Cluster one per key sent at once."""
        keys = self._keys
        with _unavailable("check"):
            call = Eval(view_call(keys, uid, jti, session_id), read_only=True)
            if not keys.cluster:
                answer = yield call
                return view_state(keys, answer, jti, answer[2], answer[3], now)
            reads: list[Any] = [call, Command("get", (keys.global_key,))]
            if session_id is not None:
                reads.append(Command("get", (keys.session_key(session_id),)))
            answers = yield Together(tuple(reads))
            session_raw = answers[2] if session_id is not None else None
            return view_state(keys, answers[0], jti, answers[1], session_raw, now)

    def read_versions(self, uids: Sequence[str], session_ids: Sequence[str], now: float) -> Flow[Versions]:
        """See ``Store.read_versions``: read-only scripts (``VERSIONS_BATCH`` keys each), on Cluster a read per key."""
        keys = self._keys
        with _unavailable("read_versions"):
            if not keys.cluster:
                calls = versions_calls(keys, uids, session_ids)
                if len(calls) == 1:
                    return versions_of([(yield Eval(calls[0], read_only=True))])
                # Several batches: sent at once (pipelined on the asyncio side's check connection).
                return versions_of((yield Together(tuple(Eval(call, read_only=True) for call in calls))))
            reads = cluster_versions_reads(keys, uids, session_ids)
            found = yield Together(tuple(Command(name, tuple(args)) for name, *args in reads))
            return cluster_versions_of(found, len(uids))

    def issue(self, uid: str, now: float, expires_at: float, session_id: Optional[str] = None) -> Flow[Stamps]:
        """See ``Store.issue``."""
        keys = self._keys
        with _unavailable("issue"):
            if not keys.cluster:
                return keys.stamps((yield Eval(keys.issue_call(uid, now, expires_at, session_id))))
            session_raw = None
            if session_id is not None:
                # The session's slot first, alone: a session of another user refuses the mint
                # before the user's or the global record is written.
                call = keys.ensure_session_call(uid, session_id, now, expires_at)
                session_raw = keys.ensured_session((yield Eval(call)))
            # The user's slot and the global record's are on different nodes: ask both at once.
            calls = (Eval(keys.issue_call(uid, now, expires_at, session_id)), Eval(keys.setup_call(now)))
            answer, global_raw = yield Together(calls)
            return keys.stamps(answer, global_raw, session_raw)

    def rotate_session(
        self, session_id: str, uid: str, presented_generation: int, now: float, grace: float, expires_at: float
    ) -> Flow[RotationOutcome]:
        """See ``Store.rotate_session``."""
        keys = self._keys
        with _unavailable("rotate_session"):
            call = keys.rotate_session_call(session_id, uid, presented_generation, now, grace, expires_at)
            return keys.rotation((yield Eval(call)))

    def get_session(self, session_id: str, now: float) -> Flow[Optional[SessionRecord]]:
        """See ``Store.get_session``."""
        keys = self._keys
        with _unavailable("get_session"):
            return keys.session_of((yield Command("get", (keys.session_key(session_id),))), now)

    def bump_user(self, uid: str, now: float, reason: Optional[str], expires_at: float) -> Flow[EpochRecord]:
        """See ``Store.bump_user``."""
        with _unavailable("bump_user"):
            return self._keys.record_of((yield Eval(self._keys.bump_user_call(uid, now, reason, expires_at))))

    def bump_global(self, now: float, reason: Optional[str]) -> Flow[EpochRecord]:
        """See ``Store.bump_global``."""
        with _unavailable("bump_global"):
            return self._keys.record_of((yield Eval(self._keys.bump_global_call(now, reason))))

    def revoke_token(self, uid: str, jti: str, expires_at: float, now: float) -> Flow[None]:
        """See ``Store.revoke_token``."""
        with _unavailable("revoke_token"):
            yield Eval(self._keys.revoke_token_call(uid, jti, expires_at, now))

    def revoke_session(self, session_id: str, expires_at: float, now: float, uid: Optional[str] = None) -> Flow[bool]:
        """See ``Store.revoke_session``."""
        keys = self._keys
        with _unavailable("revoke_session"):
            return keys.revocation((yield Eval(keys.revoke_session_call(session_id, expires_at, now, uid))))

    def get_user(self, uid: str, now: float) -> Flow[Optional[EpochRecord]]:
        """See ``Store.get_user``."""
        return (yield from self.fetch(uid, None, None, now)).user

    def get_global(self, now: float) -> Flow[Optional[EpochRecord]]:
        """See ``Store.get_global``."""
        return (yield from self.fetch("", None, None, now)).global_

    def _scan(self) -> Flow[list[tuple[bytes, Scanned]]]:
        keys = self._keys
        pairs: list[tuple[bytes, Scanned]] = []
        scan = ScanBatch(keys.pattern)
        while batch := (yield scan):
            hashes, plain = keys.split_scanned(batch)
            if plain:
                pairs += zip(
                    plain, (yield Command("mget_nonatomic" if keys.cluster else "mget", (plain,))), strict=True
                )
            if hashes:
                fields = yield Together(tuple(Command("hgetall", (key,)) for key in hashes))
                pairs += zip(hashes, fields, strict=True)
        return pairs

    def stats(self, now: float) -> Flow[StoreStats]:
        """See ``Store.stats`` (scans the prefix: O(keys))."""
        with _unavailable("stats"):
            return self._keys.tally((yield from self._scan()), now, self.kind)

    def export_entries(self, now: float) -> Flow[list[SnapshotEntry]]:
        """See ``Store.export_entries`` (scans the prefix)."""
        with _unavailable("export"):
            pairs = yield from self._scan()
        return list(self._keys.entries(pairs, now))

    def import_entries(self, entries: Iterable[SnapshotEntry], now: float) -> Flow[int]:
        """See ``Store.import_entries``."""
        keys, count = self._keys, 0
        checked = owned_entries(entries)
        with _unavailable("import"):
            for entry in checked:
                target = keys.import_key(entry, now)
                if target is not None:
                    key, field = target
                    # Compare-and-set until no concurrent write slipped in between read and write.
                    while True:
                        read = Command("hget", (key, field)) if field else Command("get", (key,))
                        current = yield read
                        if (yield Eval(keys.merge_call(entry, key, current, now, field))):
                            break
                elif (call := keys.revoke_call_for(entry, now)) is not None:
                    yield Eval(call)
                else:
                    continue
                count += 1
        return count

    def wipe(self) -> Flow[None]:
        """Delete every key of this store's namespace (never anything else: no FLUSHALL)."""
        with _unavailable("wipe"):
            scan = ScanBatch(self._keys.pattern)
            while batch := (yield scan):
                yield Command("delete", tuple(batch))

"""``LocalCache``: the store that answers checks from memory and publishes what its writes change.

It wraps another store and passes each operation on as a flow (``Publish`` and ``Offload`` are
its own requests); checks are answered from ``Memory`` when every part is fresh.
"""

from __future__ import annotations

import asyncio
import functools
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Optional

from authx_epoch.errors import ConfigurationError, StoreUnavailableError
from authx_epoch.records import (
    CheckState,
    EpochRecord,
    RotationOutcome,
    SessionRecord,
    SnapshotEntry,
    Stamps,
    StoreStats,
)
from authx_epoch.stores.cache.changes import EVERYTHING, GLOBAL, SESSION, USER, Change, digest_of
from authx_epoch.stores.cache.channel import Channel
from authx_epoch.stores.cache.memory import Memory, MonotonicClock, Revalidation
from authx_epoch.stores.cache.options import DEFAULT_MAX_ENTRIES, DEFAULT_STALENESS, valid_max_entries, valid_staleness
from authx_epoch.stores.contract import ADMIN, READ, WRITE, Flow, Step, Store, flow_of
from authx_epoch.stores.namespaces import namespaced_prefix
from authx_epoch.stores.versions import UserView, Versions


@dataclass(frozen=True)
class Publish:
    """Tell every process what changed (a request of the cache's flows)."""

    changes: tuple[Change, ...]


@dataclass(frozen=True)
class Offload:
    """Run a write of a local store the way its async side would (in a worker thread if it offloads)."""

    call: Callable[[], Any]


def _delegate(store: Store, name: str, mode: str, *args: Any) -> Flow[Any]:
    """The flow of ``store``'s operation ``name``, whatever kind of backend it is."""
    operation = getattr(store, name)
    if store.yields_requests:
        return (yield from flow_of(operation(*args)))
    if mode == WRITE and store.offload_writes:
        return (yield Offload(functools.partial(operation, *args)))
    return operation(*args)


def _issue_changes(
    memory: Memory, uid: str, expires_at: float, session_id: Optional[str], stamps: Stamps
) -> list[Change]:
    """What a mint may have changed, leaving out what a fresh part shows it did not touch.

    A mint creates missing records and extends short-lived ones; another process may hold a
    "no record" answer for them, which would reject the new token until it aged out. When this
    process's fresh parts show the records already there, at the stamped epochs and living long
    enough, the store wrote nothing, so nothing is published (most mints of an active user).
    """
    changes: list[Change] = []
    if not memory.user_epoch_current(uid, stamps.user_epoch, expires_at):
        changes.append((USER, digest_of(uid)))
    if not memory.global_epoch_current(stamps.global_epoch):
        changes.append((GLOBAL, b""))
    if session_id is not None:
        changes.append((SESSION, digest_of(session_id)))
    return changes


def _default_client(store: Store) -> Any:
    """The blocking Redis client of a ``RedisStore``, to carry the channel."""
    # The store's own client: same server, credentials, TLS and timeouts.
    getter = getattr(store, "blocking_client", None)
    if getter is None or getattr(store, "prefix", None) is None:
        raise ConfigurationError(
            f"the local cache carries its invalidations on Redis: wrap a RedisStore, or pass client= (a redis.Redis) "
            f"and prefix= for a {type(store).__name__}"
        )
    return getter()


class LocalCache(Store):
    """A store that answers checks from this process's memory, kept fresh by Redis pub/sub.

    Wraps any store (``.sync`` and ``.aio``) and is a store itself: pass it to ``install()``. A
    check is answered from memory only when every part it needs (user record, global record, the
    jti's and session's revoked-or-not answers) was confirmed by the store less than
    ``staleness`` seconds ago and the invalidation channel is connected. Over a versioned store
    (Redis) users are kept whole and recently used parts are confirmed every ``staleness / 2``
    (see ``Memory``). Every write through it
    publishes what changed on ``<prefix>:changes`` (``<prefix>~<namespace>:changes`` in a namespace
    other than the root); each process drops those parts at once.

    Args:
        store: The store to wrap, usually a ``RedisStore``.
        staleness: The longest time (seconds, at most 60) an answer is kept, even when
            invalidations are lost: the bound on how late another process's write is seen.
        max_entries: The most users, and separately sessions, kept in memory.
        client: A blocking ``redis.Redis`` (or ``RedisCluster``) for the channel; by default the
            wrapped ``RedisStore``'s own.
        prefix: The channel is ``<prefix>:changes`` (``<prefix>~<namespace>:changes`` when the
            wrapped store works in a namespace); by default the wrapped store's prefix.
        clock: A monotonic clock for the age of answers (tests inject one; never the wall clock).

    Raises:
        ConfigurationError: A bad option, or no Redis to carry the channel.
    """

    yields_requests = True

    def __init__(
        self,
        store: Store,
        *,
        staleness: float = DEFAULT_STALENESS,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        client: Any = None,
        prefix: Optional[str] = None,
        clock: MonotonicClock = time.monotonic,
    ) -> None:
        """Wrap ``store``; see the class docs."""
        if not isinstance(store, Store):
            raise ConfigurationError(f"LocalCache wraps a store (authx_epoch.stores.Store), got {type(store).__name__}")
        name_prefix = prefix if prefix is not None else getattr(store, "prefix", None)
        if client is None:
            client = _default_client(store)
        if not isinstance(name_prefix, str) or not name_prefix:
            raise ConfigurationError("LocalCache needs prefix= (the channel is '<prefix>:changes')")
        self.inner = store
        self.prefix = name_prefix
        self.kind = store.kind
        self._memory = Memory(valid_staleness(staleness), valid_max_entries(max_entries), clock)
        if store.versioned:
            self._memory.next_revalidation = -math.inf
        channel = f"{namespaced_prefix(name_prefix, store.namespace)}:changes"
        self._channel = Channel(client, channel, self._memory)

    @property
    def namespace(self) -> str:
        """The namespace of the wrapped store."""
        return self.inner.namespace

    @property
    def location(self) -> str:
        """Where the wrapped store's data is (see ``Store.location``)."""
        return self.inner.location

    def with_namespace(self, namespace: str) -> Store:
        """A cache over the wrapped store's view of ``namespace``, with its own memory and channel.

        It shares the wrapped store's clients and the channel's Redis client; its ``close()``
        stops its own subscriber and closes nothing shared.
        """
        return LocalCache(
            self.inner.with_namespace(namespace),
            staleness=self._memory.staleness,
            max_entries=self._memory.max_entries,
            client=self._channel.client,
            prefix=self.prefix,
            clock=self._memory.clock,
        )

    @property
    def staleness(self) -> float:
        """The longest time (seconds) an answer is kept."""
        return self._memory.staleness

    @property
    def channel(self) -> str:
        """The pub/sub channel that carries changes."""
        return self._channel.name

    @property
    def connected(self) -> bool:
        """Whether the invalidation channel is subscribed (only then are checks answered from memory)."""
        return self._memory.live

    @property
    def size(self) -> tuple[int, int]:
        """How many users and sessions this process holds."""
        return self._memory.size()

    def start(self) -> None:
        """Start the subscriber now rather than at the first check (it starts on its own anyway)."""
        self._channel.ensure_running()

    def clear(self) -> None:
        """Forget everything held in this process (the next checks read the store)."""
        self._memory.forget(EVERYTHING)

    # -- the contract: what the cache answers, what it passes on -----------------------------------

    def _changed(self, changes: list[Change]) -> Flow[None]:
        self._memory.forget(changes)
        yield Publish(tuple(changes))

    def setup(self, now: float) -> Flow[EpochRecord]:
        """See ``Store.setup``; also starts the subscriber (``install()`` sets the store up)."""
        self._channel.ensure_running()
        record = yield from _delegate(self.inner, "setup", WRITE, now)
        yield from self._changed([(GLOBAL, b"")])
        return record  # type: ignore[no-any-return]

    def fetch(self, uid: str, jti: Optional[str], session_id: Optional[str], now: float) -> Step[CheckState]:
        """See ``Store.fetch``: from memory when every part is fresh, else one store read."""
        state = self._memory.answer(uid, jti, session_id, now)
        if state is not None:
            return state
        return self._fetch(uid, jti, session_id, now)

    def _fetch(self, uid: str, jti: Optional[str], session_id: Optional[str], now: float) -> Flow[CheckState]:
        memory = self._memory
        self._channel.ensure_running()
        if self.inner.versioned:
            claimed = memory.claim_revalidation()
            if claimed is not None:
                yield from self._revalidate(claimed, now)
                state = memory.answer(uid, jti, session_id, now)
                if state is not None:
                    return state
            generation, confirmed = memory.generation, memory.clock()
            found: tuple[CheckState, UserView] = yield from _delegate(
                self.inner, "fetch_view", READ, uid, jti, session_id, now
            )
            state, view = found
            memory.remember(generation, confirmed, uid, jti, session_id, now, state, view)
            return state
        generation, confirmed = memory.generation, memory.clock()
        fetched: CheckState = yield from _delegate(self.inner, "fetch", READ, uid, jti, session_id, now)
        memory.remember(generation, confirmed, uid, jti, session_id, now, fetched)
        return fetched

    def _revalidate(self, claimed: Revalidation, now: float) -> Flow[None]:
        """Confirm what recently answered checks with one read of versions (see ``Memory``)."""
        try:
            read: Versions = yield from _delegate(
                self.inner, "read_versions", READ, claimed.uids, claimed.session_ids, now
            )
        except StoreUnavailableError:
            # The check that claimed it reads the store next, and reports the trouble if it lasts.
            return
        self._memory.confirm(claimed, now, read)

    def issue(self, uid: str, now: float, expires_at: float, session_id: Optional[str] = None) -> Flow[Stamps]:
        """See ``Store.issue``."""
        stamps: Stamps = yield from _delegate(self.inner, "issue", WRITE, uid, now, expires_at, session_id)
        changes = _issue_changes(self._memory, uid, expires_at, session_id, stamps)
        if changes:
            yield from self._changed(changes)
        return stamps

    def rotate_session(
        self, session_id: str, uid: str, presented_generation: int, now: float, grace: float, expires_at: float
    ) -> Flow[RotationOutcome]:
        """See ``Store.rotate_session``."""
        args = (session_id, uid, presented_generation, now, grace, expires_at)
        outcome: RotationOutcome = yield from _delegate(self.inner, "rotate_session", WRITE, *args)
        yield from self._changed([(SESSION, digest_of(session_id))])
        return outcome

    def get_session(self, session_id: str, now: float) -> Step[Optional[SessionRecord]]:
        """See ``Store.get_session`` (always read from the store)."""
        return self.inner.get_session(session_id, now)

    def bump_user(self, uid: str, now: float, reason: Optional[str], expires_at: float) -> Flow[EpochRecord]:
        """See ``Store.bump_user``."""
        record: EpochRecord = yield from _delegate(self.inner, "bump_user", WRITE, uid, now, reason, expires_at)
        yield from self._changed([(USER, digest_of(uid))])
        return record

    def bump_global(self, now: float, reason: Optional[str]) -> Flow[EpochRecord]:
        """See ``Store.bump_global``."""
        record: EpochRecord = yield from _delegate(self.inner, "bump_global", WRITE, now, reason)
        yield from self._changed([(GLOBAL, b"")])
        return record

    def revoke_token(self, uid: str, jti: str, expires_at: float, now: float) -> Flow[None]:
        """See ``Store.revoke_token``."""
        yield from _delegate(self.inner, "revoke_token", WRITE, uid, jti, expires_at, now)
        yield from self._changed([(USER, digest_of(uid))])

    def revoke_session(self, session_id: str, expires_at: float, now: float, uid: Optional[str] = None) -> Flow[bool]:
        """See ``Store.revoke_session``."""
        known: bool = yield from _delegate(self.inner, "revoke_session", WRITE, session_id, expires_at, now, uid)
        yield from self._changed([(SESSION, digest_of(session_id))])
        return known

    def get_user(self, uid: str, now: float) -> Step[Optional[EpochRecord]]:
        """See ``Store.get_user`` (always read from the store)."""
        return self.inner.get_user(uid, now)

    def get_global(self, now: float) -> Step[Optional[EpochRecord]]:
        """See ``Store.get_global`` (always read from the store)."""
        return self.inner.get_global(now)

    def stats(self, now: float) -> Step[StoreStats]:
        """See ``Store.stats``."""
        return self.inner.stats(now)

    def export_entries(self, now: float) -> Step[list[SnapshotEntry]]:
        """See ``Store.export_entries``."""
        return self.inner.export_entries(now)

    def import_entries(self, entries: Iterable[SnapshotEntry], now: float) -> Flow[int]:
        """See ``Store.import_entries``."""
        try:
            count: int = yield from _delegate(self.inner, "import_entries", ADMIN, entries, now)
        finally:
            yield from self._changed(list(EVERYTHING))
        return count

    def wipe(self) -> Flow[None]:
        """See ``Store.wipe``."""
        try:
            yield from _delegate(self.inner, "wipe", ADMIN)
        finally:
            yield from self._changed(list(EVERYTHING))

    def execute(self, request: Any) -> Any:
        """Publish changes, run offloaded writes; the wrapped store does every other request."""
        if type(request) is Publish:
            self._channel.publish(request.changes)
            return None
        if type(request) is Offload:
            return request.call()
        return self.inner.execute(request)

    async def execute_async(self, request: Any) -> Any:
        """The same, in the running event loop."""
        if type(request) is Publish:
            # A blocking publish in a worker thread: writes are rare, and one client serves every loop.
            await asyncio.to_thread(self._channel.publish, request.changes)
            return None
        if type(request) is Offload:
            return await asyncio.to_thread(request.call)
        return await self.inner.execute_async(request)

    def close(self) -> None:
        """Stop the subscriber and close the wrapped store (which does nothing if it is a namespace view)."""
        self._channel.stop()
        self.inner.close()

    async def aclose(self) -> None:
        """Stop the subscriber and close the wrapped store's asyncio client of this event loop."""
        self._channel.stop()
        await self.inner.aclose()

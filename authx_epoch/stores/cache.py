"""An opt-in local cache in front of a network store, kept fresh by a Redis pub/sub channel.

Turn it on with one URL option, ``redis://host:6379/0?local_cache=1`` (optionally
``&cache_staleness=0.5`` and ``&cache_max_entries=10000``), or wrap a store object:
``LocalCache(RedisStore(...), staleness=0.5)``.

Each process keeps what its checks have read (user records, the global record, and whether a jti
or a session is revoked, "not revoked" included), each part with the time it was confirmed by the
store. A check is answered from memory only when every part it needs was confirmed less than
``staleness`` seconds ago *and* the invalidation channel is connected; otherwise it reads the
store (one round trip, as without the cache) and refreshes those parts.

Every write made through the cache publishes a small msgpack message on ``<prefix>:changes``
(``<prefix>~<namespace>:changes`` for a namespace other than the root)
naming what changed (a digest of the user id or session id, the global record, or everything);
each process's subscriber drops the matching parts at once. A process sees its own writes at once
(it drops its own parts before the write returns). Writers that bypass the cache (a process, or
the ``authx-epoch`` CLI, using a URL without ``local_cache=1``) are seen within ``staleness`` only.
When the subscription drops, the cache is cleared and every check goes to the store until the
subscriber is back, so the staleness bound holds even when invalidations are lost.

``with_namespace`` gives a ``LocalCache`` over the wrapped store's view of that namespace, with its
own memory, channel and subscriber; closing it stops its subscriber only.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Optional

import msgpack

from authx_epoch.errors import ConfigurationError
from authx_epoch.records import (
    CheckState,
    EpochRecord,
    RotationOutcome,
    SessionRecord,
    SnapshotEntry,
    Stamps,
    StoreStats,
)
from authx_epoch.stores.contract import ADMIN, READ, WRITE, Flow, Step, Store, flow_of
from authx_epoch.stores.namespaces import namespaced_prefix
from authx_epoch.stores.url import CACHE_OPTIONS, StoreURL

__all__ = ["DEFAULT_MAX_ENTRIES", "DEFAULT_STALENESS", "LocalCache", "cache_options"]

logger = logging.getLogger("authx_epoch")

#: How old (seconds) a confirmed part may be and still answer a check.
DEFAULT_STALENESS = 1.0
#: How many users (and, separately, sessions) one process keeps.
DEFAULT_MAX_ENTRIES = 10_000
#: The most revoked-or-not answers kept per user (an attacker may present any jti for a real user).
MAX_JTIS_PER_USER = 32
#: The largest staleness accepted: beyond a minute a cache would hide revocations for too long.
MAX_STALENESS = 60.0

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")

# Kinds of change carried by the channel.
_USER, _SESSION, _GLOBAL, _ALL = "u", "s", "g", "*"
Change = tuple[str, bytes]
_EVERYTHING: list[Change] = [(_ALL, b"")]

# Subscriber timing (seconds): how often it pings Redis, and how long a silence means a dead link.
_TICK = 0.1
_MAX_BACKOFF = 1.0

MonotonicClock = Callable[[], float]


def _digest(text: str) -> bytes:
    # Ids travel as digests: a channel any client may SUBSCRIBE to should not list user ids.
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


def _encode(origin: bytes, changes: Sequence[Change]) -> bytes:
    """A message: ``[origin, [[kind, key], ...]]`` in msgpack (kinds ``u``, ``s``, ``g``, ``*``)."""
    return msgpack.packb([origin, [[kind, key] for kind, key in changes]], use_bin_type=True)  # type: ignore[no-any-return]


def _decode(payload: object) -> tuple[bytes, list[Change]]:
    """The sender and the changes a message names; anything unreadable means "everything"."""
    try:
        origin, items = msgpack.unpackb(payload, raw=False)
        changes = [(str(kind), bytes(key)) for kind, key in items]
        origin = bytes(origin)
    except Exception:  # any malformed message must clear, never crash the subscriber
        return b"", list(_EVERYTHING)
    if not changes or any(kind not in (_USER, _SESSION, _GLOBAL, _ALL) for kind, _ in changes):
        return b"", list(_EVERYTHING)
    return origin, changes


def _staleness(value: object) -> float:
    try:
        seconds = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        seconds = -1.0
    if not 0 < seconds <= MAX_STALENESS:
        raise ConfigurationError(
            f"cache staleness must be a number of seconds in (0, {MAX_STALENESS:g}], got {value!r}"
        )
    return seconds


def _max_entries(value: object) -> int:
    try:
        count = int(str(value)) if not isinstance(value, bool) else -1
    except ValueError:
        count = -1
    if count < 1:
        raise ConfigurationError(f"cache max_entries must be a whole number >= 1, got {value!r}")
    return count


def cache_options(url: StoreURL) -> Optional[dict[str, Any]]:
    """The keyword arguments for ``LocalCache`` a store URL asks for, or ``None`` when the cache is off.

    Raises:
        ConfigurationError: An option has a bad value, or a ``cache_*`` option is given without
            ``local_cache=1`` (it would silently do nothing).
    """
    ours = {name: url.options[name] for name in CACHE_OPTIONS if name in url.options}
    if not ours:
        return None
    switch = ours.pop("local_cache", "0").strip().lower()
    if switch not in _TRUE + _FALSE:
        raise ConfigurationError(f"local_cache must be 1 or 0 in the store URL, got {switch!r}")
    if switch in _FALSE and ours:
        raise ConfigurationError(f"{', '.join(sorted(ours))} needs local_cache=1 in the store URL")
    if switch in _FALSE:
        return None
    options: dict[str, Any] = {}
    if "cache_staleness" in ours:
        options["staleness"] = _staleness(ours["cache_staleness"])
    if "cache_max_entries" in ours:
        options["max_entries"] = _max_entries(ours["cache_max_entries"])
    return options


# -- what one process remembers ------------------------------------------------------------

# A confirmed part: (value, monotonic time of confirmation, the store's ``now`` it was read at).
_Jti = tuple[bool, float, float]
# A user: (record or None, confirmed, now, {jti: _Jti}, digest of the uid).
_User = tuple[Optional[EpochRecord], float, float, dict[str, _Jti], bytes]
# A session: (revoked, record or None, confirmed, now, digest of the session id).
_Session = tuple[bool, Optional[SessionRecord], float, float, bytes]
_Global = tuple[Optional[EpochRecord], float, float]


class _Memory:
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
                digest = _digest(uid)
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
                    session_digest = _digest(session_id)
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
                if kind == _USER:
                    uid = self._user_of.pop(key, None)
                    if uid is not None:
                        self._users.pop(uid, None)
                elif kind == _SESSION:
                    session_id = self._session_of.pop(key, None)
                    if session_id is not None:
                        self._sessions.pop(session_id, None)
                elif kind == _GLOBAL:
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


# -- the channel ----------------------------------------------------------------------------


class _Channel:
    """Publishes changes on ``<prefix>:changes`` and runs the one subscriber thread of a process.

    One thread serves both the blocking and the asyncio side, whatever event loops come and go;
    it only ever drops entries, so it never holds up a request.
    """

    def __init__(self, client: Any, name: str, memory: _Memory) -> None:
        self.client = client
        self.name = name
        self.memory = memory
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._pid = os.getpid()
        self._start_lock = threading.Lock()
        #: Identifies this cache's messages, so that their echo is ignored.
        self.origin = os.urandom(8)
        self.reconnects = 0
        _CHANNELS.add(self)

    def ensure_running(self) -> None:
        """Start the subscriber if it is not running (first check, or first check after a fork)."""
        if (self._thread is not None and self._pid == os.getpid()) or self._stop.is_set():
            return
        with self._start_lock:
            if (self._thread is not None and self._pid == os.getpid()) or self._stop.is_set():
                return
            self._pid = os.getpid()
            thread = threading.Thread(target=self._run, name="authx-epoch-cache", daemon=True)
            thread.start()
            self._thread = thread

    def after_fork(self) -> None:
        """In a forked child: the parent's thread is gone, so nothing here is known to be fresh."""
        # Locks held by a parent's thread at the fork would never be released in the child.
        self.memory.reset_lock()
        self.memory.set_live(False)
        self.origin = os.urandom(8)  # the parent's messages are not the child's own
        self._thread = None
        self._start_lock = threading.Lock()

    def publish(self, changes: Sequence[Change]) -> None:
        """Tell every other process what changed; a failure is logged, the write stands."""
        try:
            self.client.publish(self.name, _encode(self.origin, changes))
        except Exception as exc:  # the write itself succeeded; others see it within the bound
            logger.warning(
                "authx-epoch local cache: could not publish a change (%s: %s); "
                "other processes see it within their staleness bound",
                type(exc).__name__,
                exc,
            )

    def stop(self) -> None:
        """Stop the subscriber (it exits within one tick) and stop answering from memory."""
        self._stop.set()
        self.memory.set_live(False)

    def _run(self) -> None:
        backoff = _TICK / 2
        while not self._stop.is_set():
            try:
                self._listen()
                backoff = _TICK / 2
            except Exception as exc:  # the thread must outlive any Redis trouble
                if not self._stop.is_set():
                    logger.warning(
                        "authx-epoch local cache: invalidation channel lost (%s: %s); checks go to the store",
                        type(exc).__name__,
                        exc,
                    )
            finally:
                self.memory.set_live(False)
            self._stop.wait(backoff)
            backoff = min(backoff * 2, _MAX_BACKOFF)

    def _listen(self) -> None:
        pubsub = self.client.pubsub()
        try:
            pubsub.subscribe(self.name)
            memory = self.memory
            # A silence this long means the link is dead even if the socket looks open (a frozen
            # Redis, a cut network); no answer is ever kept longer than the staleness bound anyway.
            ping_every = max(_TICK, min(1.0, memory.staleness / 2))
            dead_after = 3 * ping_every
            heard = pinged = time.monotonic()
            while not self._stop.is_set():
                message = pubsub.get_message(timeout=_TICK)
                moment = time.monotonic()
                if message is not None:
                    heard = moment
                    kind = message.get("type")
                    if kind == "message":
                        origin, changes = _decode(message.get("data"))
                        # Its own changes were dropped before the write returned; dropping them
                        # again when the echo arrives would only throw away fresher answers.
                        if origin != self.origin:
                            memory.forget(changes)
                    elif kind == "subscribe":
                        # The server now sends us every change: start from nothing. Also seen
                        # when redis-py reconnects on its own, after changes may have been missed.
                        self.reconnects += 1
                        memory.set_live(True)
                if moment - pinged >= ping_every:
                    pubsub.ping("authx-epoch")
                    pinged = moment
                if moment - heard > dead_after:
                    raise TimeoutError(f"no answer from Redis on the invalidation channel for {dead_after:g} s")
        finally:
            self.memory.set_live(False)
            # Closing a broken connection may fail; it is gone either way.
            with contextlib.suppress(Exception):
                pubsub.close()


_CHANNELS: weakref.WeakSet[_Channel] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for channel in list(_CHANNELS):
        channel.after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)


# -- the cached operations -------------------------------------------------------------------


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
    memory: _Memory, uid: str, expires_at: float, session_id: Optional[str], stamps: Stamps
) -> list[Change]:
    """What a mint may have changed, leaving out what a fresh part shows it did not touch.

    A mint creates missing records and extends short-lived ones; another process may hold a
    "no record" answer for them, which would reject the new token until it aged out. When this
    process's fresh parts show the records already there, at the stamped epochs and living long
    enough, the store wrote nothing, so nothing is published (most mints of an active user).
    """
    changes: list[Change] = []
    if not memory.user_epoch_current(uid, stamps.user_epoch, expires_at):
        changes.append((_USER, _digest(uid)))
    if not memory.global_epoch_current(stamps.global_epoch):
        changes.append((_GLOBAL, b""))
    if session_id is not None:
        changes.append((_SESSION, _digest(session_id)))
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
    ``staleness`` seconds ago and the invalidation channel is connected. Every write through it
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
        self._memory = _Memory(_staleness(staleness), _max_entries(max_entries), clock)
        channel = f"{namespaced_prefix(name_prefix, store.namespace)}:changes"
        self._channel = _Channel(client, channel, self._memory)

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
        self._memory.forget(_EVERYTHING)

    # -- the contract: what the cache answers, what it passes on -----------------------------------

    def _changed(self, changes: list[Change]) -> Flow[None]:
        self._memory.forget(changes)
        yield Publish(tuple(changes))

    def setup(self, now: float) -> Flow[EpochRecord]:
        """See ``Store.setup``; also starts the subscriber (``install()`` sets the store up)."""
        self._channel.ensure_running()
        record = yield from _delegate(self.inner, "setup", WRITE, now)
        yield from self._changed([(_GLOBAL, b"")])
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
        generation, confirmed = memory.generation, memory.clock()
        state: CheckState = yield from _delegate(self.inner, "fetch", READ, uid, jti, session_id, now)
        memory.remember(generation, confirmed, uid, jti, session_id, now, state)
        return state

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
        yield from self._changed([(_SESSION, _digest(session_id))])
        return outcome

    def get_session(self, session_id: str, now: float) -> Step[Optional[SessionRecord]]:
        """See ``Store.get_session`` (always read from the store)."""
        return self.inner.get_session(session_id, now)

    def bump_user(self, uid: str, now: float, reason: Optional[str], expires_at: float) -> Flow[EpochRecord]:
        """See ``Store.bump_user``."""
        record: EpochRecord = yield from _delegate(self.inner, "bump_user", WRITE, uid, now, reason, expires_at)
        yield from self._changed([(_USER, _digest(uid))])
        return record

    def bump_global(self, now: float, reason: Optional[str]) -> Flow[EpochRecord]:
        """See ``Store.bump_global``."""
        record: EpochRecord = yield from _delegate(self.inner, "bump_global", WRITE, now, reason)
        yield from self._changed([(_GLOBAL, b"")])
        return record

    def revoke_token(self, uid: str, jti: str, expires_at: float, now: float) -> Flow[None]:
        """See ``Store.revoke_token``."""
        yield from _delegate(self.inner, "revoke_token", WRITE, uid, jti, expires_at, now)
        yield from self._changed([(_USER, _digest(uid))])

    def revoke_session(self, session_id: str, expires_at: float, now: float, uid: Optional[str] = None) -> Flow[bool]:
        """See ``Store.revoke_session``."""
        known: bool = yield from _delegate(self.inner, "revoke_session", WRITE, session_id, expires_at, now, uid)
        yield from self._changed([(_SESSION, _digest(session_id))])
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
            yield from self._changed(list(_EVERYTHING))
        return count

    def wipe(self) -> Flow[None]:
        """See ``Store.wipe``."""
        try:
            yield from _delegate(self.inner, "wipe", ADMIN)
        finally:
            yield from self._changed(list(_EVERYTHING))

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

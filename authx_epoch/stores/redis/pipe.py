"""The check's own connection to Redis: one per event loop, pipelined, with replies parsed by hiredis.

redis-py spends most of a check's client time outside the network: a pool checkout, its command
packer, its response parser and the awaits between them (a check through redis-py costs more than
twice the round trip). The check is one read-only script call, so this module writes it straight
to an asyncio transport and reads replies in ``data_received``. A check made while nothing is in
flight is written at once; checks made while others are in flight are written together at the
next turn of the loop (one ``write``, one read for many checks). Redis answers in order, so
replies resolve the waiting futures first in, first out.

On a single Redis the connection speaks RESP3 with client-side tracking of the global record
(``CLIENT TRACKING ON OPTIN``): it reads the global record once, and Redis pushes an
invalidation on this same connection when it changes. A push is queued before the reply to any
command Redis runs after the change, so a check that sends ``HMGET`` of the user's hash and
finds no invalidation before its reply knows the global record it holds was current when Redis
answered: the check is one plain ``HMGET``, no script (``slots.read_beside``). A server that
cannot track (before Redis 6, or ``CLIENT`` denied by an ACL) keeps RESP2 and the check script.

Only what a check needs is here: connect (with ``AUTH`` and ``SELECT``), send a packed command,
get its reply, fail every waiting call when the connection breaks or a reply is late. Anything
else (an error reply, a server without ``EVALSHA_RO``, TLS, a client configured for RESP3, a
credential provider) goes through redis-py as before, which also keeps one retry on a broken connection.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import socket
from collections.abc import Sequence
from typing import Any, Optional, Union

import redis

try:
    import hiredis
except ImportError:  # pragma: no cover - redis[hiredis] is the documented install
    hiredis = None  # type: ignore[assignment]

#: hiredis' type for RESP3 pushes (hiredis 3); without it a push cannot be told from a reply, so
#: the connection stays on RESP2 and tracks nothing.
_PUSH: Optional[type] = getattr(hiredis, "PushNotification", None)


def pack(*parts: Union[bytes, str, int]) -> bytes:
    """A command in RESP: an array of bulk strings."""
    chunks = [b"*%d\r\n" % len(parts)]
    for part in parts:
        data = part if isinstance(part, bytes) else str(part).encode()
        chunks.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(chunks)


#: Seconds a tracked copy serves before it is read again. Tracking sees every write, a flush and
#: an eviction, but not an operator's ``SWAPDB`` (no invalidation in Redis 7.0): this bounds that.
TRACKED_FOR = 1.0


class Tracked:
    """A key read with tracking on: its value until Redis pushes that it changed (then ``stale``)."""

    __slots__ = ("caching", "checked", "invalidated", "loaded", "stale", "until")

    def __init__(self, caching: asyncio.Future[Any], loaded: asyncio.Future[Any], until: float) -> None:
        """The replies to ``CLIENT CACHING yes`` and to the ``GET`` after it; serves until ``until`` (loop time)."""
        self.caching = caching
        self.loaded = loaded
        self.stale = False
        #: Whether Redis itself said the key changed (``stale`` has other causes too).
        self.invalidated = False
        self.until = until
        self.checked = False

    def read(self) -> tuple[bool, Any]:
        """``(True, the value read)``, or ``(False, None)`` if the read or its tracking failed.

        Only called once a reply sent after the read has arrived, so both futures are done.
        They are never awaited: a caller cancelled while awaiting would cancel them for all.
        """
        if self.checked:
            return True, self.loaded.result()
        for future in (self.caching, self.loaded):
            if not future.done() or future.cancelled() or future.exception() is not None:
                return False, None
            if isinstance(future.result(), ReplyError):
                return False, None
        self.checked = True
        return True, self.loaded.result()


def _retrieved(future: asyncio.Future[Any]) -> None:
    # Nobody awaits a tracked read's futures: mark a failure as seen, or asyncio logs it.
    if not future.cancelled():
        future.exception()


class ReplyError(Exception):
    """Redis answered a call with an error (the caller decides what it means)."""


class Pipe(asyncio.Protocol):
    """One connection to one Redis, owned by one event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout: Optional[float]) -> None:
        self.loop = loop
        self.timeout = timeout
        self.transport: Optional[asyncio.Transport] = None
        self.reader = hiredis.Reader(replyError=ReplyError)
        # (future, deadline) of every call sent or about to be sent, in the order Redis answers.
        self.waiting: collections.deque[tuple[asyncio.Future[Any], float]] = collections.deque()
        self.outgoing: list[bytes] = []
        self.watchdog: Optional[asyncio.TimerHandle] = None
        self.broken: Optional[BaseException] = None
        #: Calls sent, and writes that sent them (``calls / writes``: checks per round trip).
        self.calls = 0
        self.writes = 0
        #: Whether the connection speaks RESP3 (needed for the invalidation pushes of tracking).
        self.resp3 = False
        #: Whether Redis tracks the keys this connection reads with ``track``.
        self.tracking = False
        self.tracked: dict[bytes, Tracked] = {}

    # -- asyncio.Protocol ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Keep the transport (asyncio calls this once connected)."""
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        """Hand each complete reply to the oldest waiting call; apply each invalidation push."""
        self.reader.feed(data)
        while True:
            reply = self.reader.gets()
            if reply is False:
                return
            if _PUSH is not None and type(reply) is _PUSH:
                self.pushed(reply)
                continue
            if not self.waiting:
                # A reply nobody asked for: the stream is out of step; never guess whose it is.
                self.fail(redis.ConnectionError("Redis sent a reply to no command"))
                return
            future, _ = self.waiting.popleft()
            if not future.done():  # a caller cancelled while waiting: its reply is dropped
                future.set_result(reply)

    def pushed(self, push: Any) -> None:
        """Drop the tracked copies Redis says changed (all of them on ``invalidate`` with no keys: a flush)."""
        if len(push) < 2 or push[0] != b"invalidate":
            return  # nothing else is subscribed; a push is never a reply
        keys = list(self.tracked) if push[1] is None else push[1]
        for key in keys:
            entry = self.tracked.pop(key, None)
            if entry is not None:
                entry.stale = entry.invalidated = True

    def connection_lost(self, exc: Optional[Exception]) -> None:
        """Fail every waiting call."""
        self.fail(redis.ConnectionError(f"connection to Redis lost: {exc or 'closed by the server'}"))

    # -- calls ---------------------------------------------------------------------------------

    def call(self, packed: bytes) -> asyncio.Future[Any]:
        """Send ``packed`` (at once, or with the calls made in this turn of the loop); the future gets its reply."""
        if self.broken is not None:
            # Whatever broke it (a late reply, a lost connection), a new call never waited for
            # anything: it may go elsewhere at once.
            raise redis.ConnectionError(f"the check connection is broken: {self.broken}")
        future = self.loop.create_future()
        self.calls += 1
        if not self.waiting and self.transport is not None:
            # Nothing in flight: write at once (a lone check waits for no other turn of the loop).
            self.writes += 1
            self.transport.write(packed)
        else:
            # Calls made while others are in flight are written together at the next turn.
            if not self.outgoing:
                self.loop.call_soon(self.flush)
            self.outgoing.append(packed)
        deadline = self.loop.time() + self.timeout if self.timeout is not None else float("inf")
        self.waiting.append((future, deadline))
        if self.watchdog is None and self.timeout is not None:
            self.watchdog = self.loop.call_at(deadline, self.watch)
        return future

    def track(self, key: bytes) -> Tracked:
        """Read ``key`` with tracking on and keep the copy: ``CLIENT CACHING yes`` and ``GET``, adjacent on the wire.

        Calls are written in the order they are made and nothing runs between these two, so the
        ``GET`` is the command ``CLIENT CACHING yes`` applies to.
        """
        replaced = self.tracked.get(key)
        if replaced is not None:
            # A check in flight may hold it, and a push naming the key would now find only the
            # new copy: the old one is no longer trusted (its holders read the key again).
            replaced.stale = True
        caching = self.call(_CACHING)
        loaded = self.call(pack(b"GET", key))
        for future in (caching, loaded):
            future.add_done_callback(_retrieved)
        entry = self.tracked[key] = Tracked(caching, loaded, self.loop.time() + TRACKED_FOR)
        return entry

    def untrack(self, key: bytes, entry: Tracked) -> None:
        """Forget ``entry`` (a read that failed), unless a newer copy of ``key`` replaced it."""
        entry.stale = True
        if self.tracked.get(key) is entry:
            del self.tracked[key]

    def flush(self) -> None:
        """Write every call made since the last flush in one write."""
        if self.outgoing and self.transport is not None and self.broken is None:
            data = b"".join(self.outgoing)
            self.outgoing.clear()
            self.writes += 1
            self.transport.write(data)

    def watch(self) -> None:
        """Fail everything if the oldest call is past its deadline; else wait for the next deadline."""
        self.watchdog = None
        # A cancelled call still waits for its reply (Redis answers in order), so it counts too.
        if not self.waiting:
            return
        deadline = self.waiting[0][1]
        if self.loop.time() >= deadline:
            self.fail(redis.TimeoutError(f"Redis did not answer within {self.timeout} s"))
        else:
            self.watchdog = self.loop.call_at(deadline, self.watch)

    def fail(self, exc: BaseException) -> None:
        """Break the connection: every waiting call gets ``exc``; later calls raise it."""
        if self.broken is None:
            self.broken = exc
        for entry in self.tracked.values():
            entry.stale = True  # Redis tracks nothing for a connection it no longer has
        self.tracked.clear()
        waiting, self.waiting = self.waiting, collections.deque()
        for future, _ in waiting:
            if not future.done():
                future.set_exception(exc)
        self.outgoing.clear()
        if self.watchdog is not None:
            self.watchdog.cancel()
            self.watchdog = None
        if self.transport is not None:
            try:
                self.transport.abort()
            except RuntimeError:
                # Its event loop was closed without shutting down (a store closed afterwards):
                # end the connection at least, so Redis frees it; the socket object goes with the
                # garbage collector, as redis-py's own connections do in that case.
                sock = self.transport.get_extra_info("socket")
                if sock is not None:
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        """Close the connection (any loop may call this; nothing is awaited)."""
        self.fail(redis.ConnectionError("the store was closed"))


async def open_pipe(settings: dict[str, Any]) -> Pipe:
    """Connect, authenticate and select the database; then, where ``settings["track"]``, start tracking.

    ``settings`` as ``pipe_settings`` returns them, with the store's ``probe_key`` added (by
    ``AsyncClients``) for the tracking probe.
    """
    loop = asyncio.get_running_loop()
    timeout = settings.get("socket_timeout")
    if settings.get("path"):
        connecting = loop.create_unix_connection(lambda: Pipe(loop, timeout), settings["path"])
    else:
        connecting = loop.create_connection(lambda: Pipe(loop, timeout), settings["host"], settings["port"])
    try:
        _, pipe = await asyncio.wait_for(connecting, settings.get("socket_connect_timeout") or timeout)
    except asyncio.TimeoutError as exc:
        raise redis.TimeoutError("timed out connecting to Redis") from exc
    except OSError as exc:
        raise redis.ConnectionError(f"cannot connect to Redis: {exc}") from exc
    handshake: list[tuple[str, Sequence[Union[bytes, str, int]]]] = []
    if settings.get("password") is not None:
        username = settings.get("username")
        auth = (username, settings["password"]) if username else (settings["password"],)
        handshake.append(("AUTH", auth))
    if settings.get("db"):
        handshake.append(("SELECT", (settings["db"],)))
    try:
        for name, arguments in handshake:
            reply = await pipe.call(pack(name, *arguments))
            if isinstance(reply, ReplyError):
                raise redis.ConnectionError(f"Redis refused {name}: {reply}")
        if settings.get("track") and _PUSH is not None:
            await _start_tracking(pipe, settings["probe_key"])
    except BaseException:
        pipe.close()
        raise
    return pipe


_CACHING = pack(b"CLIENT", b"CACHING", b"yes")


async def _start_tracking(pipe: Pipe, probe_key: bytes) -> None:
    """Switch to RESP3 and turn on tracking of the keys read with ``track``; stay on RESP2 where refused.

    Tracking is trusted only once seen to work: the connection tracks ``probe_key`` (the store's
    ``KeySpace.probe_key``), writes it itself, and must get the invalidation before the reply to
    a ``PING`` sent after the write. A server or proxy that accepts ``CLIENT TRACKING`` without
    pushing (or an ACL that denies the write) leaves the check on the script, which reads the
    global record every time.
    """
    if isinstance(await pipe.call(pack(b"HELLO", 3)), ReplyError):
        return  # before Redis 6: no RESP3, no tracking
    pipe.resp3 = True
    if not isinstance(await pipe.call(pack(b"CLIENT", b"TRACKING", b"ON", b"OPTIN")), ReplyError):
        probe = pipe.track(probe_key)
        # A change to see pushed, nothing left behind, and a reply to wait for.
        writes = [(b"SET", probe_key, b"1", b"PX", b"1000"), (b"DEL", probe_key), (b"PING",)]
        replies = [pipe.call(pack(*command)) for command in writes]
        for reply in replies:
            await reply
        pipe.untrack(probe_key, probe)
        if probe.read()[0] and probe.invalidated:
            pipe.tracking = True
            return
        await pipe.call(pack(b"CLIENT", b"TRACKING", b"OFF"))
    # Back to RESP2, and the check reads the global record itself.
    if isinstance(await pipe.call(pack(b"HELLO", 2)), ReplyError):
        raise redis.ConnectionError("Redis refused to go back to RESP2")
    pipe.resp3 = False


def pipe_settings(client: Any) -> Optional[dict[str, Any]]:
    """What ``open_pipe`` needs to reach the servers of a redis-py asyncio client, or ``None``.

    A plain client gives its server's address; a Cluster client gives ``cluster: True`` and no
    address (each node's comes from the client's slot map). ``None`` (use redis-py) for anything
    this module does not speak: no hiredis, TLS, RESP3, a credential provider, decoded
    responses, a Sentinel client, a custom connection class.
    """
    if hiredis is None:
        return None
    cluster = getattr(client, "nodes_manager", None) is not None
    pool = getattr(client, "connection_pool", None)
    if cluster:
        kwargs = getattr(client, "connection_kwargs", None)
        connection_class = kwargs.get("connection_class") if isinstance(kwargs, dict) else None
    elif pool is not None:
        kwargs, connection_class = pool.connection_kwargs, pool.connection_class
    else:
        return None
    if not isinstance(kwargs, dict):
        return None
    plain = connection_class is redis.asyncio.Connection
    unix = connection_class is redis.asyncio.UnixDomainSocketConnection and not cluster
    if not (plain or unix):
        return None
    if kwargs.get("protocol") not in (None, 2, "2") or kwargs.get("credential_provider") is not None:
        return None
    if kwargs.get("decode_responses"):
        return None
    return {
        "cluster": cluster,
        # On one Redis, track the global record (on Cluster a push is not ordered with the check).
        "track": not cluster,
        "host": None if cluster else kwargs.get("host", "localhost"),
        "port": None if cluster else int(kwargs.get("port", 6379)),
        "path": kwargs.get("path") if unix else None,
        "username": kwargs.get("username"),
        "password": kwargs.get("password"),
        "db": int(kwargs.get("db") or 0),
        "socket_timeout": kwargs.get("socket_timeout"),
        "socket_connect_timeout": kwargs.get("socket_connect_timeout"),
    }

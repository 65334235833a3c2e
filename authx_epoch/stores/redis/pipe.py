"""The check's own connection to Redis: one per event loop, pipelined, with replies parsed by hiredis.

redis-py spends most of a check's client time outside the network: a pool checkout, its command
packer, its response parser and the awaits between them (a check through redis-py costs more than
twice the round trip). The check is one read-only script call, so this module writes it straight
to an asyncio transport and reads replies in ``data_received``. A check made while nothing is in
flight is written at once; checks made while others are in flight are written together at the
next turn of the loop (one ``write``, one read for many checks). Redis answers in order, so
replies resolve the waiting futures first in, first out.

On Redis Cluster the check's reads (``HMGET``, ``GET``) go the same way, through one connection
per node (``Pipes``), the node found with redis-py's slot map.

Only what a check needs is here: connect (with ``AUTH`` and ``SELECT``), send a packed command,
get its reply, fail every waiting call when the connection breaks or a reply is late. Anything
else (an error reply, a server without ``EVALSHA_RO``, TLS, RESP3, a credential provider) goes
through redis-py as before, which also keeps one retry on a broken connection.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import socket
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Optional, Union

import redis

from authx_epoch.stores.redis.scripts import Call

try:
    import hiredis
except ImportError:  # pragma: no cover - redis[hiredis] is the documented install
    hiredis = None  # type: ignore[assignment]

#: Seconds before a check connection that could not be opened is tried again (redis-py serves meanwhile).
RETRY_AFTER = 1.0


def pack(*parts: Union[bytes, str, int]) -> bytes:
    """A command in RESP: an array of bulk strings."""
    chunks = [b"*%d\r\n" % len(parts)]
    for part in parts:
        data = part if isinstance(part, bytes) else str(part).encode()
        chunks.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(chunks)


#: What ``check_script`` answers when the check connection did not (redis-py does the call).
NOT_ANSWERED: Any = object()


async def ask(slot: PipeSlot, packed: bytes) -> Any:
    """Send a read through a check connection and return its reply, or ``NOT_ANSWERED``.

    ``NOT_ANSWERED`` when there is no connection now, when it broke under this call (a read is
    safe to send again, as redis-py's one retry would), or on an error reply (the server lost its
    scripts, has no ``EVALSHA_RO``, or the key moved to another Cluster node): redis-py's path
    knows what each of those means. A late reply is a ``redis.TimeoutError``: a hung Redis fails
    the request, it is not asked twice.
    """
    pipe = slot.pipe
    if pipe is None or pipe.broken is not None:
        # Not on the path of every check: only the first one, or the first after a break.
        pipe = await slot.get()
        if pipe is None:
            return NOT_ANSWERED
    try:
        reply = await pipe.call(packed)
    except redis.ConnectionError:
        return NOT_ANSWERED
    return NOT_ANSWERED if isinstance(reply, ReplyError) else reply


async def check_script(slot: PipeSlot, call: Call) -> Any:
    """Run a read-only script through the loop's check connection, or answer ``NOT_ANSWERED`` (see ``ask``)."""
    return await ask(slot, pack(b"EVALSHA_RO", call.script.sha, len(call.keys), *call.keys, *call.args))


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

    # -- asyncio.Protocol ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Keep the transport (asyncio calls this once connected)."""
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        """Hand each complete reply to the oldest waiting call."""
        self.reader.feed(data)
        while True:
            reply = self.reader.gets()
            if reply is False:
                return
            if not self.waiting:
                # A reply nobody asked for: the stream is out of step; never guess whose it is.
                self.fail(redis.ConnectionError("Redis sent a reply to no command"))
                return
            future, _ = self.waiting.popleft()
            if not future.done():  # a caller cancelled while waiting: its reply is dropped
                future.set_result(reply)

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
    """Connect, authenticate and select the database; ``settings`` as ``pipe_settings`` returns them."""
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
    except BaseException:
        pipe.close()
        raise
    return pipe


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
        "host": None if cluster else kwargs.get("host", "localhost"),
        "port": None if cluster else int(kwargs.get("port", 6379)),
        "path": kwargs.get("path") if unix else None,
        "username": kwargs.get("username"),
        "password": kwargs.get("password"),
        "db": int(kwargs.get("db") or 0),
        "socket_timeout": kwargs.get("socket_timeout"),
        "socket_connect_timeout": kwargs.get("socket_connect_timeout"),
    }


class PipeSlot:
    """The check connection of one event loop: opened on first use, reopened after it breaks.

    While a connection cannot be opened (Redis down, a refused ``AUTH``), ``get`` answers ``None``
    for ``RETRY_AFTER`` seconds and the checks go through redis-py, which reports the outage.
    """

    def __init__(self, settings: dict[str, Any]) -> None:
        """A slot for connections made with ``settings`` (from ``pipe_settings``)."""
        self.settings = settings
        self.pipe: Optional[Pipe] = None
        self.opening: Optional[asyncio.Task[Pipe]] = None
        self.retry_at = 0.0
        self.closed = False

    async def get(self) -> Optional[Pipe]:
        """A working connection, or ``None`` when there is none to be had now."""
        pipe = self.pipe
        if pipe is not None and pipe.broken is None:
            return pipe
        if self.closed:
            return None
        loop = asyncio.get_running_loop()
        opening = self.opening
        if opening is None:
            if loop.time() < self.retry_at:
                return None
            opening = self.opening = loop.create_task(open_pipe(self.settings))
        try:
            # Shielded: the callers that share one opening may be cancelled one by one.
            pipe = await asyncio.shield(opening)
        except (redis.RedisError, OSError):
            if self.opening is opening:
                self.opening = None
                self.retry_at = loop.time() + RETRY_AFTER
            return None
        if self.opening is opening:
            self.opening = None
            if self.closed:
                pipe.close()
                return None
            self.pipe = pipe
        return pipe if pipe is self.pipe else None

    def close(self) -> None:
        """Close the connection (nothing is awaited) and open no other."""
        self.closed = True
        if self.pipe is not None:
            self.pipe.close()


class Pipes:
    """The check connections of one event loop: the server's, or one per Cluster node the checks read."""

    def __init__(self, settings: dict[str, Any]) -> None:
        """Connections made with ``settings`` (from ``pipe_settings``)."""
        self.settings = settings
        #: The single server's connection (``None`` on Cluster).
        self.main = None if settings["cluster"] else PipeSlot(settings)
        self.nodes: dict[tuple[str, int], PipeSlot] = {}

    def node(self, host: str, port: int, known: Callable[[], Iterable[Any]]) -> PipeSlot:
        """The connection to one Cluster node (made on first use).

        ``known`` gives the nodes the Cluster has now (redis-py's ``get_nodes``: each with a
        ``host`` and a ``port``). It is asked only when a new address shows up, which means the
        Cluster changed shape: the connections to nodes it no longer has are closed then, rather
        than held open until the store closes. (A check still waiting on one gets its answer from
        redis-py.)
        """
        found = self.nodes.get((host, port))
        if found is None:
            current = {(node.host, int(node.port)) for node in known()}
            for address in [address for address in self.nodes if address not in current]:
                self.nodes.pop(address).close()
            found = self.nodes[(host, port)] = PipeSlot({**self.settings, "host": host, "port": port})
        return found

    def close(self) -> None:
        """Close every connection (nothing is awaited)."""
        if self.main is not None:
            self.main.close()
        for slot in self.nodes.values():
            slot.close()


#: The reads a Cluster check sends, by redis-py method name.
CLUSTER_READS = {"get": b"GET", "hmget": b"HMGET"}


async def cluster_read(slot: PipeSlot, name: str, args: Sequence[Any]) -> Any:
    """``GET key`` or ``HMGET key [fields]`` through a node's check connection, or ``NOT_ANSWERED`` (see ``ask``).

    On a ``MOVED`` or ``ASK`` reply, redis-py, sent the same read, follows the redirection and
    updates its slot map.
    """
    parts = [args[0], *args[1]] if name == "hmget" else list(args)
    return await ask(slot, pack(CLUSTER_READS[name], *parts))

"""The check connections of each event loop, and the reads a check sends through them.

One ``PipeSlot`` per server holds an event loop's ``pipe.Pipe``: opened on first use, reopened
after it breaks, and left alone for a while when it cannot be opened (redis-py answers then).
On a single Redis a check is ``read_beside`` (one ``HMGET``, the global record from the
connection's tracked copy) or, where the connection does not track, ``check_script``.

On Redis Cluster the check's reads (``HMGET``, ``GET``) go the same way, through one connection
per node (``Pipes``), the node found with redis-py's slot map. The global record is read with
every check there: a push from the global record's node is not ordered with a reply from the
user's node.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Optional

import redis

from authx_epoch.stores.redis.pipe import Pipe, ReplyError, open_pipe, pack
from authx_epoch.stores.redis.scripts import Call

#: Seconds before a check connection that could not be opened is tried again (redis-py serves meanwhile).
RETRY_AFTER = 1.0


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
    """Run a read-only script through the loop's check connection, or answer ``NOT_ANSWERED`` (see ``ask``).

    Over RESP3 a script's reply reads as over RESP2: the scripts never call ``redis.setresp(3)``,
    so Redis still turns Lua's ``false`` into a null, and ``true`` into 1.
    """
    return await ask(slot, pack(b"EVALSHA_RO", call.script.sha, len(call.keys), *call.keys, *call.args))


async def read_beside(slot: PipeSlot, packed: bytes, key: bytes) -> Any:
    """Send the read ``packed``; return ``(its reply, the value of key when Redis answered it)``, or ``NOT_ANSWERED``.

    The value of ``key`` is the connection's tracked copy: read with tracking on, dropped by
    Redis' invalidation push when the key changes, and read again after ``pipe.TRACKED_FOR``.
    The copy in hand when the reply arrives is current as of the reply: a change made before
    Redis ran ``packed`` pushed its invalidation ahead of the reply on this connection. An
    invalidation seen by the time the reply is handled (it may have come just after it) costs
    one ``GET`` more, never a stale answer. ``NOT_ANSWERED`` as ``ask`` gives it, and when the
    connection does not track.
    """
    pipe = slot.pipe
    if pipe is None or pipe.broken is not None:
        pipe = await slot.get()
        if pipe is None:
            return NOT_ANSWERED
    if not pipe.tracking:
        return NOT_ANSWERED
    try:
        entry = pipe.tracked.get(key)
        if entry is None or pipe.loop.time() >= entry.until:
            entry = pipe.track(key)
        reply = await pipe.call(packed)
        ok, value = entry.read()
        if not ok:
            pipe.untrack(key, entry)
            return NOT_ANSWERED
        if entry.stale:
            # Changed lately (a global bump: rare); the next check tracks the key again.
            value = await pipe.call(pack(b"GET", key))
    except redis.ConnectionError:
        return NOT_ANSWERED
    if isinstance(reply, ReplyError) or isinstance(value, ReplyError):
        return NOT_ANSWERED
    return reply, value


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

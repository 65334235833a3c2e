"""The redis-py clients of a Redis store: building them from settings, one per event loop, closing them.

Retries and timeouts are set so an outage fails a request fast instead of holding it; an asyncio
client is closed with the event loop it ran on, or when its store is closed or dropped.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import AsyncIterator, Callable
from typing import Any, Optional, Union
from urllib.parse import quote, unquote, urlsplit

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.cluster
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry

from authx_epoch.errors import ConfigurationError
from authx_epoch.stores.redis.pipe import pipe_settings
from authx_epoch.stores.redis.slots import Pipes
from authx_epoch.stores.url import redact

#: Default socket and connect timeouts (seconds): a hung Redis fails a request fast.
DEFAULT_TIMEOUT = 0.25

AnyRedis = Union["redis.Redis", "redis.cluster.RedisCluster"]
AnyAsyncRedis = Union["redis.asyncio.Redis", "redis.asyncio.cluster.RedisCluster"]

#: Connections each process's asyncio client keeps open to a single Redis at most.
POOL_SIZE = 128
#: Seconds a check waits for a free connection when all of them are busy, before it fails (503).
POOL_WAIT = 1.0


def retry_policy() -> Retry:
    """The blocking clients' retries: one, at once, on a broken connection only."""
    # One immediate retry on a broken connection (a pooled socket that died when Redis restarted),
    # none on a timeout (a hung Redis must fail the request, not hold it). redis-py's default is
    # ten retries with backoff, which would turn an outage into seconds-long requests.
    return Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,))


def async_retry_policy() -> AsyncRetry:
    """``retry_policy`` for the asyncio clients."""
    return AsyncRetry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,))


def timeout_setting(name: str, value: object) -> float:
    """The timeout option ``name`` in seconds (``DEFAULT_TIMEOUT`` when unset).

    Raises:
        ConfigurationError: ``value`` is not a number of seconds between 0 and 3600.
    """
    if value is None:
        return DEFAULT_TIMEOUT
    try:
        seconds = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        seconds = -1.0
    if not 0 < seconds < 3600:
        raise ConfigurationError(f"{name} must be a positive number of seconds, got {value!r}")
    return seconds


def cluster_nodes(url: str) -> tuple[list[tuple[str, int]], dict[str, Any]]:
    """Parse ``redis+cluster://[user:password@]host:port[,host:port...][/]``."""
    parts = urlsplit(url)
    netloc = parts.netloc
    credentials: dict[str, Any] = {}
    if "@" in netloc:
        userinfo, netloc = netloc.rsplit("@", 1)
        user, _, password = userinfo.partition(":")
        credentials = {"username": unquote(user) or None, "password": unquote(password) or None}
    if parts.path not in ("", "/"):
        raise ConfigurationError(
            f"a Redis Cluster URL has no database path (Cluster has only db 0), got {redact(url)!r}"
        )
    nodes = []
    for item in netloc.split(","):
        host, sep, port = item.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigurationError(
                f"a Redis Cluster URL lists host:port pairs, e.g. 'redis+cluster://10.0.0.1:7000,10.0.0.2:7000', "
                f"got {item!r} in {redact(url)!r}"
            )
        nodes.append((host.strip("[]"), int(port)))
    return nodes, credentials


# -- the blocking client -----------------------------------------------------------------


class SyncClient:
    """The blocking client of one ``RedisStore``, built on first use; shared by its namespace views."""

    def __init__(self, factory: Callable[[], AnyRedis], owned: bool) -> None:
        self.factory = factory
        self.owned = owned
        self.client: Optional[AnyRedis] = None
        self.lock = threading.Lock()
        #: Whether the server has EVALSHA_RO (Redis 7.0 and later); learnt on first use.
        self.read_only_scripts = True

    def get(self) -> AnyRedis:
        """The client, built now if this is its first use."""
        client = self.client
        if client is None:
            # Built on first use: a Cluster client contacts the cluster when it is built, and an
            # outage at start-up must be a StoreUnavailableError, not a crash at import.
            with self.lock:
                client = self.client
                if client is None:
                    client = self.client = self.factory()
        return client

    def close(self) -> None:
        """Drop the client, closing it if the store built it."""
        client, self.client = self.client, None
        if client is not None and self.owned:
            client.close()


# -- the asyncio clients -----------------------------------------------------------------


def _close_now(client: AnyAsyncRedis) -> None:
    """Close every socket of an asyncio client without awaiting anything."""
    # redis-py has no synchronous close for asyncio clients; a connection's _close() is what it
    # uses itself when a connection is collected. Awaiting aclose() is not an option here: a
    # loop that shuts down cancels the task that would run it.
    try:
        if isinstance(client, redis.asyncio.cluster.RedisCluster):
            manager = client.nodes_manager
            nodes = [*manager.nodes_cache.values(), *manager.startup_nodes.values()]
            connections: list[Any] = [conn for node in nodes for conn in node._connections]
            # What aclose() sets: the client counts as closed (redis-py 8.2 and later look at the
            # default node, earlier ones at _initialize).
            client._initialize = True
            manager.default_node = None  # type: ignore[assignment]  # redis-py types it as always set
        else:
            pool = client.connection_pool
            connections = [*pool._available_connections, *pool._in_use_connections]
    except AttributeError:  # a redis-py without these internals: nothing more can be done
        return
    for connection in connections:
        try:
            connection._close()
        except (AttributeError, RuntimeError, OSError):  # already closed, or its loop is gone
            continue


async def _keeper(client: AnyAsyncRedis, pipes: Optional[Pipes]) -> AsyncIterator[None]:
    """Closes ``client`` (and the loop's check connection) when its event loop shuts down, or when the store is dropped.

    An asyncio client is bound to the loop it first ran on and can only be closed there. The
    loop finalizes this generator at shutdown (``asyncio.run`` and ``asyncio.Runner`` do), or
    when the store is garbage collected while the loop runs.
    """
    try:
        yield
    finally:
        if pipes is not None:
            pipes.close()
        _close_now(client)


async def _initialize(client: AnyAsyncRedis) -> None:
    if isinstance(client, redis.asyncio.cluster.RedisCluster):
        await client.initialize()


class AsyncClients:
    """The asyncio clients of one ``RedisStore`` (one per event loop, or the one given); shared by its views."""

    def __init__(self, factory: Callable[[], AnyAsyncRedis], fixed: Optional[AnyAsyncRedis], probe_key: bytes) -> None:
        self.factory = factory
        self.fixed = fixed
        self.probe_key = probe_key
        # A client per event loop for the clients this store builds (tests, asyncio.run() per job).
        self.clients: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, tuple[AnyAsyncRedis, Any, asyncio.Task[None], Optional[Pipes]]
        ] = weakref.WeakKeyDictionary()
        self.loop: Optional[asyncio.AbstractEventLoop] = None
        self.client: Optional[AnyAsyncRedis] = None
        #: The running loop's check connections (``None`` where redis-py serves the checks).
        self.pipes: Optional[Pipes] = None
        #: Whether the server has EVALSHA_RO (Redis 7.0 and later); learnt on first use.
        self.read_only_scripts = True

    async def get(self) -> AnyAsyncRedis:
        """The client of the running event loop (or the one given), built and initialized on first use."""
        if self.fixed is not None:
            return self.fixed
        loop = asyncio.get_running_loop()
        if loop is self.loop and self.client is not None:
            return self.client
        found = self.clients.get(loop)
        if found is None:
            client = self.factory()
            settings = pipe_settings(client)
            if settings is not None:
                settings["probe_key"] = self.probe_key
            pipes = Pipes(settings) if settings is not None else None
            keeper = _keeper(client, pipes)
            await keeper.__anext__()  # never suspends: no other caller can slip in before the entry exists
            found = self.clients[loop] = (client, keeper, loop.create_task(_initialize(client)), pipes)
        client, keeper, ready, pipes = found
        if ready.done() and not ready.cancelled() and ready.exception() is not None:
            # The first contact failed (Redis down at start-up): try again on this call.
            ready = loop.create_task(_initialize(client))
            self.clients[loop] = (client, keeper, ready, pipes)
        # Every caller waits for the one initialization: a Cluster client that many requests
        # start using at once otherwise maps the cluster several times over, dropping the
        # connections of commands in flight (which redis-py then retries, running them twice).
        await asyncio.shield(ready)
        self.loop, self.client, self.pipes = loop, client, pipes
        return client

    def close_idle(self) -> None:
        """Close the clients of event loops that no longer run (the store itself is being closed).

        A loop closed without finalizing its async generators never ran ``_keeper``; its client's
        sockets would stay open until the garbage collector found them.
        """
        if self.fixed is not None:
            return
        for loop, (client, _, _, pipes) in list(self.clients.items()):
            if not loop.is_running():
                self.clients.pop(loop, None)
                if pipes is not None:
                    pipes.close()
                _close_now(client)
        if self.loop is not None and not self.loop.is_running():
            self.loop = self.client = self.pipes = None

    async def close(self) -> None:
        """Close the running event loop's client, if the store built it."""
        if self.fixed is not None:
            return
        found = self.clients.pop(asyncio.get_running_loop(), None)
        self.loop = self.client = self.pipes = None
        if found is not None:
            client, keeper, _, pipes = found
            if pipes is not None:
                pipes.close()
            try:
                await client.aclose()
            finally:
                await keeper.aclose()


# -- building clients ----------------------------------------------------------------------


def plain_settings(client: Any) -> Optional[dict[str, Any]]:
    """The connection settings of a plain (non-Cluster, non-Sentinel) client, to build its twin."""
    pool = getattr(client, "connection_pool", None)
    if pool is None or type(pool).__name__ != "ConnectionPool":
        return None
    kwargs = pool.connection_kwargs
    settings: dict[str, Any] = {
        name: kwargs[name]
        for name in ("db", "username", "password", "socket_timeout", "socket_connect_timeout", "client_name")
        if name in kwargs
    }
    connection = pool.connection_class.__name__
    if connection == "UnixDomainSocketConnection":
        settings["unix_socket_path"] = kwargs.get("path")
    elif connection in ("Connection", "SSLConnection"):
        settings.update(host=kwargs.get("host", "localhost"), port=kwargs.get("port", 6379))
        if connection == "SSLConnection":
            settings["ssl"] = True
            for name in ("ssl_cert_reqs", "ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_check_hostname"):
                if name in kwargs:
                    settings[name] = kwargs[name]
    else:
        return None
    return settings


def missing_client(side: str, given: str) -> Callable[[], Any]:
    """A client factory that raises ``ConfigurationError``: the ``side`` client cannot be built from ``given``."""

    def fail() -> Any:
        raise ConfigurationError(
            f"this RedisStore was given only {given}, and its settings cannot be copied (a Cluster, Sentinel or "
            f"custom pool): pass the {side} client too, e.g. RedisStore(client=..., sync_client=...)"
        )

    return fail


def decodes_responses(client: Any) -> bool:
    """Whether ``client`` decodes responses to strings (a store needs the raw bytes)."""
    get_encoder = getattr(client, "get_encoder", None)
    if get_encoder is None:
        return False
    return bool(getattr(get_encoder(), "decode_responses", False))


def host_port(host: str, port: object) -> str:
    """``host:port``, with an IPv6 host in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def location_of(client: Any, prefix: str) -> str:
    """Where a client's data is, without credentials (see ``Store.location``)."""
    suffix = "prefix=" + quote(prefix, safe=":")
    manager = getattr(client, "nodes_manager", None)
    if manager is not None:  # a Cluster client, blocking or asyncio
        nodes = sorted(host_port(node.host, node.port) for node in manager.startup_nodes.values())
        return f"redis+cluster://{','.join(nodes)}?{suffix}"
    pool = getattr(client, "connection_pool", None)
    kwargs = getattr(pool, "connection_kwargs", None)
    connection = getattr(getattr(pool, "connection_class", None), "__name__", "")
    if isinstance(kwargs, dict) and connection == "UnixDomainSocketConnection":
        return f"unix://{kwargs.get('path')}?db={kwargs.get('db', 0)}&{suffix}"
    if isinstance(kwargs, dict) and connection in ("Connection", "SSLConnection"):
        where = host_port(str(kwargs.get("host", "localhost")), kwargs.get("port", 6379))
        return f"redis://{where}/{kwargs.get('db', 0)}?{suffix}"
    # A Sentinel or custom pool: the client object is all that names the data.
    return f"redis://client-{id(client):x}?{suffix}"

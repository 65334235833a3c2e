"""``redis://``, ``rediss://``, ``unix://`` and ``redis+cluster://``: the store shared by every worker.

Needs the ``redis`` extra: ``pip install 'authx-epoch[redis]'``.

One check is one ``EVALSHA_RO`` of a read-only script on one Redis (one command, one round
trip). On Redis Cluster a user's record and revoked jtis share one key (a hash), while the global
record and session records live in slots of their own; the check reads them with one command per
key, sent to their nodes in parallel (2 commands, 3 with a session id; one round trip of wall
time). Writes are Lua scripts,
so concurrent bumps never lose an increment. Every driver error or timeout becomes
``StoreUnavailableError`` (a 503 in fail-closed mode); the client reconnects on its own, so
service resumes when Redis is back. The key layout is described in ``_redis_codec``.
"""

from __future__ import annotations

import asyncio
import copy
import threading
import weakref
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import islice
from typing import Any, Optional, Union
from urllib.parse import quote, unquote, urlsplit

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.cluster
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError, RedisClusterException, RedisError, ResponseError
from redis.retry import Retry

from authx_epoch.errors import ConfigurationError, StoreUnavailableError
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
from authx_epoch.stores._redis_codec import (
    DEFAULT_PREFIX,
    RECORD_FIELD,
    Call,
    KeySpace,
    Scanned,
    UnreadableValueError,
    Value,
)
from authx_epoch.stores.contract import Flow, Store
from authx_epoch.stores.namespaces import ROOT_NAMESPACE
from authx_epoch.stores.url import StoreURL, redact

__all__ = ["DEFAULT_PREFIX", "DEFAULT_TIMEOUT", "RedisStore"]

#: Default socket and connect timeouts (seconds): a hung Redis fails a request fast.
DEFAULT_TIMEOUT = 0.25

AnyRedis = Union["redis.Redis", "redis.cluster.RedisCluster"]
AnyAsyncRedis = Union["redis.asyncio.Redis", "redis.asyncio.cluster.RedisCluster"]

_BATCH = 500
_OPTIONS = ("prefix", "socket_timeout", "socket_connect_timeout")
_ERRORS = (RedisError, RedisClusterException, OSError, asyncio.TimeoutError, UnreadableValueError)


@contextmanager
def _unavailable(what: str) -> Iterator[None]:
    # A plain context manager also works around awaits, so both twins share it.
    try:
        yield
    except _ERRORS as exc:
        raise StoreUnavailableError(f"Redis store unavailable ({what}): {type(exc).__name__}: {exc}") from exc


def _no_read_only_scripts(exc: ResponseError) -> bool:
    # Redis before 7.0 has no EVALSHA_RO; the same script then runs with EVALSHA.
    return "unknown command" in str(exc).lower()


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


def _retry() -> Retry:
    # One immediate retry on a broken connection (a pooled socket that died when Redis restarted),
    # none on a timeout (a hung Redis must fail the request, not hold it). redis-py's default is
    # ten retries with backoff, which would turn an outage into seconds-long requests.
    return Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,))


def _async_retry() -> AsyncRetry:
    return AsyncRetry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,))


def _timeout(name: str, value: object) -> float:
    if value is None:
        return DEFAULT_TIMEOUT
    try:
        seconds = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        seconds = -1.0
    if not 0 < seconds < 3600:
        raise ConfigurationError(f"{name} must be a positive number of seconds, got {value!r}")
    return seconds


def _cluster_nodes(url: str) -> tuple[list[tuple[str, int]], dict[str, Any]]:
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


# -- clients ------------------------------------------------------------------------------


class _SyncClient:
    """The blocking client of one ``RedisStore``, built on first use; shared by its namespace views."""

    def __init__(self, factory: Callable[[], AnyRedis], owned: bool) -> None:
        self.factory = factory
        self.owned = owned
        self.client: Optional[AnyRedis] = None
        self.lock = threading.Lock()
        #: Whether the server has EVALSHA_RO (Redis 7.0 and later); learnt on first use.
        self.read_only_scripts = True

    def get(self) -> AnyRedis:
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
        client, self.client = self.client, None
        if client is not None and self.owned:
            client.close()


# -- I/O: the asyncio twin -----------------------------------------------------------------


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


async def _keeper(client: AnyAsyncRedis) -> AsyncIterator[None]:
    """Closes ``client`` when its event loop shuts down, or when the store that holds it is dropped.

    An asyncio client is bound to the loop it first ran on and can only be closed there. The
    loop finalizes this generator at shutdown (``asyncio.run`` and ``asyncio.Runner`` do), or
    when the store is garbage collected while the loop runs.
    """
    try:
        yield
    finally:
        _close_now(client)


async def _initialize(client: AnyAsyncRedis) -> None:
    if isinstance(client, redis.asyncio.cluster.RedisCluster):
        await client.initialize()


class _AsyncClients:
    """The asyncio clients of one ``RedisStore`` (one per event loop, or the one given); shared by its views."""

    def __init__(self, factory: Callable[[], AnyAsyncRedis], fixed: Optional[AnyAsyncRedis]) -> None:
        self.factory = factory
        self.fixed = fixed
        # A client per event loop for the clients this store builds (tests, asyncio.run() per job).
        self.clients: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, tuple[AnyAsyncRedis, Any, asyncio.Task[None]]
        ] = weakref.WeakKeyDictionary()
        self.loop: Optional[asyncio.AbstractEventLoop] = None
        self.client: Optional[AnyAsyncRedis] = None
        #: Whether the server has EVALSHA_RO (Redis 7.0 and later); learnt on first use.
        self.read_only_scripts = True

    async def get(self) -> AnyAsyncRedis:
        if self.fixed is not None:
            return self.fixed
        loop = asyncio.get_running_loop()
        if loop is self.loop and self.client is not None:
            return self.client
        found = self.clients.get(loop)
        if found is None:
            client = self.factory()
            keeper = _keeper(client)
            await keeper.__anext__()  # never suspends: no other caller can slip in before the entry exists
            found = self.clients[loop] = (client, keeper, loop.create_task(_initialize(client)))
        client, keeper, ready = found
        if ready.done() and not ready.cancelled() and ready.exception() is not None:
            # The first contact failed (Redis down at start-up): try again on this call.
            ready = loop.create_task(_initialize(client))
            self.clients[loop] = (client, keeper, ready)
        # Every caller waits for the one initialization: a Cluster client that many requests
        # start using at once otherwise maps the cluster several times over, dropping the
        # connections of commands in flight (which redis-py then retries, running them twice).
        await asyncio.shield(ready)
        self.loop, self.client = loop, client
        return client

    def close_idle(self) -> None:
        """Close the clients of event loops that no longer run (the store itself is being closed).

        A loop closed without finalizing its async generators never ran ``_keeper``; its client's
        sockets would stay open until the garbage collector found them.
        """
        if self.fixed is not None:
            return
        for loop, (client, _, _) in list(self.clients.items()):
            if not loop.is_running():
                self.clients.pop(loop, None)
                _close_now(client)
        if self.loop is not None and not self.loop.is_running():
            self.loop = self.client = None

    async def close(self) -> None:
        if self.fixed is not None:
            return
        found = self.clients.pop(asyncio.get_running_loop(), None)
        self.loop = self.client = None
        if found is not None:
            client, keeper, _ = found
            try:
                await client.aclose()
            finally:
                await keeper.aclose()


# -- requests: what a flow asks of Redis -------------------------------------------------------


@dataclass(frozen=True)
class Eval:
    """Run a script (read-only ones with ``EVALSHA_RO`` where the server has it)."""

    call: Call
    read_only: bool = False


@dataclass(frozen=True)
class Command:
    """One plain command, by its redis-py method name."""

    name: str
    args: tuple[Any, ...]


@dataclass(frozen=True)
class Together:
    """Independent requests: pipelined (blocking side) or sent concurrently (asyncio side, on Cluster)."""

    requests: tuple[Any, ...]


@dataclass
class ScanBatch:
    """The next batch of this namespace's keys (administration: the blocking side only); ``[]`` at the end."""

    pattern: bytes
    found: Optional[Iterator[bytes]] = None


def _evalsha(client: Any, shared: Any, request: Eval) -> Any:
    """Call a script by digest on the blocking client, loading it when the server lost it."""
    call = request.call
    if request.read_only and shared.read_only_scripts:
        try:
            return client.evalsha_ro(call.script.sha, len(call.keys), *call.keys, *call.args)
        except NoScriptError:
            return client.eval_ro(call.script.source, len(call.keys), *call.keys, *call.args)
        except ResponseError as exc:
            if not _no_read_only_scripts(exc):
                raise
            shared.read_only_scripts = False
    try:
        return client.evalsha(call.script.sha, len(call.keys), *call.keys, *call.args)
    except NoScriptError:
        # Scripts are cached by the server, and lost on restart or SCRIPT FLUSH.
        return client.eval(call.script.source, len(call.keys), *call.keys, *call.args)


async def _evalsha_async(client: Any, shared: Any, request: Eval) -> Any:
    """``_evalsha`` on the asyncio client."""
    call = request.call
    if request.read_only and shared.read_only_scripts:
        try:
            return await client.evalsha_ro(call.script.sha, len(call.keys), *call.keys, *call.args)
        except NoScriptError:
            return await client.eval_ro(call.script.source, len(call.keys), *call.keys, *call.args)
        except ResponseError as exc:
            if not _no_read_only_scripts(exc):
                raise
            shared.read_only_scripts = False
    try:
        return await client.evalsha(call.script.sha, len(call.keys), *call.keys, *call.args)
    except NoScriptError:
        return await client.eval(call.script.source, len(call.keys), *call.keys, *call.args)


# -- building clients ----------------------------------------------------------------------


def _plain_settings(client: Any) -> Optional[dict[str, Any]]:
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


def _missing(side: str, given: str) -> Callable[[], Any]:
    def fail() -> Any:
        raise ConfigurationError(
            f"this RedisStore was given only {given}, and its settings cannot be copied (a Cluster, Sentinel or "
            f"custom pool): pass the {side} client too, e.g. RedisStore(client=..., sync_client=...)"
        )

    return fail


def _decodes(client: Any) -> bool:
    get_encoder = getattr(client, "get_encoder", None)
    if get_encoder is None:
        return False
    return bool(getattr(get_encoder(), "decode_responses", False))


#: Connections each process's asyncio client keeps open to a single Redis at most.
POOL_SIZE = 128
#: Seconds a check waits for a free connection when all of them are busy, before it fails (503).
POOL_WAIT = 1.0


def _host_port(host: str, port: object) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _location(client: Any, prefix: str) -> str:
    """Where a client's data is, without credentials (see ``Store.location``)."""
    suffix = "prefix=" + quote(prefix, safe=":")
    manager = getattr(client, "nodes_manager", None)
    if manager is not None:  # a Cluster client, blocking or asyncio
        nodes = sorted(_host_port(node.host, node.port) for node in manager.startup_nodes.values())
        return f"redis+cluster://{','.join(nodes)}?{suffix}"
    pool = getattr(client, "connection_pool", None)
    kwargs = getattr(pool, "connection_kwargs", None)
    connection = getattr(getattr(pool, "connection_class", None), "__name__", "")
    if isinstance(kwargs, dict) and connection == "UnixDomainSocketConnection":
        return f"unix://{kwargs.get('path')}?db={kwargs.get('db', 0)}&{suffix}"
    if isinstance(kwargs, dict) and connection in ("Connection", "SSLConnection"):
        where = _host_port(str(kwargs.get("host", "localhost")), kwargs.get("port", 6379))
        return f"redis://{where}/{kwargs.get('db', 0)}?{suffix}"
    # A Sentinel or custom pool: the client object is all that names the data.
    return f"redis://client-{id(client):x}?{suffix}"


class RedisStore(Store):
    """A store in Redis or Redis Cluster (or Valkey), shared by every process that uses the same prefix.

    Build it from a URL (``RedisStore.from_url`` or ``install(auth, store="redis://...")``) or
    from clients you built yourself (for Sentinel, custom TLS, credential providers)::

        RedisStore(client=redis.asyncio.Redis(...), sync_client=redis.Redis(...), prefix="myapp")

    The asyncio client serves checks; the blocking one stamps tokens (AuthX mints synchronously)
    and serves ``revocation.sync``. Given only one of them, the store builds the other from its
    settings when it is a plain client (host/port, TLS or unix socket); for a Cluster, Sentinel or
    custom pool the missing side raises ``ConfigurationError`` when used, so pass both. Clients
    given to the store are never closed by it; clients it builds are. Clients must not decode
    responses (``decode_responses=False``, the default): values are msgpack bytes.

    ``with_namespace`` gives views over the same clients whose keys live under
    ``<prefix>~<namespace>:`` (see ``_redis_codec``); a view never closes the clients.

    Args:
        client: A ``redis.asyncio.Redis`` or ``redis.asyncio.cluster.RedisCluster``.
        sync_client: A ``redis.Redis`` or ``redis.cluster.RedisCluster`` over the same data.
        prefix: The prefix of the keys (no braces, no ``~``); several apps can share one Redis.
        namespace: The namespace this object works in (``""``: the root, keys under ``<prefix>:``).
    """

    yields_requests = True

    def __init__(
        self,
        client: Optional[AnyAsyncRedis] = None,
        *,
        sync_client: Optional[AnyRedis] = None,
        prefix: str = DEFAULT_PREFIX,
        namespace: str = ROOT_NAMESPACE,
    ) -> None:
        """Wrap clients you built; see the class docs."""
        if client is None and sync_client is None:
            raise ConfigurationError(
                "RedisStore needs a client (redis.asyncio.Redis or RedisCluster), or use RedisStore.from_url(url)"
            )
        if client is not None and not isinstance(client, (redis.asyncio.Redis, redis.asyncio.cluster.RedisCluster)):
            raise ConfigurationError(
                "client must be a redis.asyncio.Redis or redis.asyncio.cluster.RedisCluster, "
                f"got {type(client).__name__}"
            )
        if sync_client is not None and not isinstance(sync_client, (redis.Redis, redis.cluster.RedisCluster)):
            raise ConfigurationError(
                f"sync_client must be a redis.Redis or redis.cluster.RedisCluster, got {type(sync_client).__name__}"
            )
        if _decodes(client) or _decodes(sync_client):
            raise ConfigurationError("build the Redis clients with decode_responses=False: values are msgpack bytes")
        cluster = isinstance(client, redis.asyncio.cluster.RedisCluster) or isinstance(
            sync_client, redis.cluster.RedisCluster
        )
        if (
            client is not None
            and sync_client is not None
            and isinstance(client, redis.asyncio.cluster.RedisCluster)
            != isinstance(sync_client, redis.cluster.RedisCluster)
        ):
            raise ConfigurationError("client and sync_client must both be Cluster clients, or neither")
        keys = KeySpace(prefix, cluster=cluster, namespace=namespace)
        kind = "redis+cluster" if cluster else "redis"
        sync_factory: Callable[[], AnyRedis]
        async_factory: Callable[[], AnyAsyncRedis]
        if sync_client is not None:
            fixed_sync = sync_client
            sync_factory, sync_owned = (lambda: fixed_sync), False
        else:
            settings = _plain_settings(client)
            sync_owned = True
            if settings is None:
                sync_factory = _missing("blocking (sync_client=redis.Redis(...))", "an asyncio client")
            else:
                sync_factory = lambda: redis.Redis(retry=_retry(), **settings)  # noqa: E731
        async_settings = _plain_settings(sync_client) if client is None else {}
        if async_settings is None:
            async_factory = _missing("asyncio (client=redis.asyncio.Redis(...))", "a blocking client")
        else:
            async_factory = lambda: redis.asyncio.Redis(retry=_async_retry(), **async_settings)  # noqa: E731
        location = _location(sync_client if sync_client is not None else client, keys.prefix)
        self._init(keys, kind, sync_factory, sync_owned, async_factory, client, location)

    def _init(
        self,
        keys: KeySpace,
        kind: str,
        sync_factory: Callable[[], AnyRedis],
        sync_owned: bool,
        async_factory: Callable[[], AnyAsyncRedis],
        async_fixed: Optional[AnyAsyncRedis],
        location: str,
    ) -> None:
        self.prefix = keys.prefix
        self.kind = kind
        self._location = location
        self._sync_client = _SyncClient(sync_factory, sync_owned)
        self._async_clients = _AsyncClients(async_factory, async_fixed)
        self._bind(keys, owner=True)

    def _bind(self, keys: KeySpace, *, owner: bool) -> None:
        self._keys = keys
        self._owner = owner

    @classmethod
    def from_url(
        cls,
        url: Union[str, StoreURL],
        *,
        prefix: Optional[str] = None,
        socket_timeout: Optional[float] = None,
        socket_connect_timeout: Optional[float] = None,
        namespace: str = ROOT_NAMESPACE,
    ) -> RedisStore:
        """Build a store from a URL.

        ``redis://[user:password@]host:port/db``, ``rediss://`` (TLS), ``unix:///path/redis.sock?db=0``
        and ``redis+cluster://host:port,host:port`` (``rediss+cluster://`` for TLS). The query may
        set ``prefix``, ``socket_timeout`` and ``socket_connect_timeout`` (seconds, default 0.25),
        plus any option redis-py's ``from_url`` understands on a single Redis. Keyword arguments
        win over the query. ``namespace`` is the namespace the store works in (``""``: the root).

        Raises:
            ConfigurationError: The URL, an option or the namespace is malformed.
        """
        parsed = url if isinstance(url, StoreURL) else StoreURL.parse(url)
        if parsed.kind not in ("redis", "redis+cluster"):
            raise ConfigurationError(f"not a Redis URL: {parsed.redacted!r}")
        # Keyword arguments win over the query.
        key_prefix = prefix if prefix is not None else parsed.option("prefix")
        if key_prefix is None:
            key_prefix = DEFAULT_PREFIX
        timeouts: dict[str, Any] = {
            "socket_timeout": _timeout(
                "socket_timeout", socket_timeout if socket_timeout is not None else parsed.option("socket_timeout")
            ),
            "socket_connect_timeout": _timeout(
                "socket_connect_timeout",
                socket_connect_timeout
                if socket_connect_timeout is not None
                else parsed.option("socket_connect_timeout"),
            ),
        }
        cleaned = parsed.driver_url
        scheme = parsed.scheme
        self = cls.__new__(cls)
        if parsed.kind == "redis+cluster":
            nodes, credentials = _cluster_nodes(cleaned)
            settings = {**credentials, **timeouts, "ssl": scheme == "rediss+cluster"}

            def sync_cluster() -> AnyRedis:
                startup = [redis.cluster.ClusterNode(host, port) for host, port in nodes]  # type: ignore[no-untyped-call]
                return redis.cluster.RedisCluster(startup_nodes=startup, retry=_retry(), **settings)

            def async_cluster() -> AnyAsyncRedis:
                startup = [redis.asyncio.cluster.ClusterNode(host, port) for host, port in nodes]
                return redis.asyncio.cluster.RedisCluster(startup_nodes=startup, retry=_async_retry(), **settings)

            keys = KeySpace(key_prefix, cluster=True, namespace=namespace)
            where = ",".join(sorted(_host_port(host, port) for host, port in nodes))
            location = f"redis+cluster://{where}?prefix={quote(keys.prefix, safe=':')}"
            self._init(keys, "redis+cluster", sync_cluster, True, async_cluster, None, location)
            return self
        try:
            probe = redis.Redis.from_url(cleaned, retry=_retry(), **timeouts)
            # redis-py only notices an unknown query option when it first connects; instantiating
            # a connection object (no I/O) surfaces it now, as a configuration error.
            probe.connection_pool.connection_class(**probe.connection_pool.connection_kwargs)
        except (TypeError, ValueError) as exc:
            raise ConfigurationError(f"bad Redis URL {parsed.redacted!r}: {exc}") from exc
        keys = KeySpace(key_prefix, namespace=namespace)

        def async_single() -> AnyAsyncRedis:
            # A blocking pool: a burst of concurrent checks beyond the pool's size waits briefly
            # for a connection instead of failing with "Too many connections" (a 503 for a valid
            # token). max_connections in the URL's query overrides the size.
            pool = redis.asyncio.BlockingConnectionPool.from_url(
                cleaned, retry=_async_retry(), timeout=POOL_WAIT, **{"max_connections": POOL_SIZE, **timeouts}
            )
            return redis.asyncio.Redis.from_pool(pool)

        self._init(keys, "redis", lambda: probe, True, async_single, None, _location(probe, keys.prefix))
        return self

    @property
    def namespace(self) -> str:
        """The namespace this object works in (``""``: the root)."""
        return self._keys.namespace

    @property
    def location(self) -> str:
        """``redis://host:port/db?prefix=P``, ``unix:///path?db=N&prefix=P`` or ``redis+cluster://h1:p1,h2:p2?prefix=P``.

        Never a password; ``rediss://`` (TLS) is named ``redis://`` too, since it is the same data.
        """
        return self._location

    def with_namespace(self, namespace: str) -> Store:
        """A view of the same Redis in ``namespace``, sharing this object's clients; see ``Store``."""
        view = copy.copy(self)
        view._bind(self._keys.with_namespace(namespace), owner=False)
        return view

    # -- the contract: each operation once, as a flow of requests ------------------------------

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

    # -- I/O: the requests, done on each side ------------------------------------------------------

    def execute(self, request: Any) -> Any:
        """Do one request with the blocking client."""
        client = self._sync_client.get()
        kind = type(request)
        if kind is Eval:
            return _evalsha(client, self._sync_client, request)
        if kind is Command:
            return getattr(client, request.name)(*request.args)
        if kind is Together:
            if all(type(part) is Command for part in request.requests):
                pipe = client.pipeline(transaction=False) if not self._keys.cluster else client.pipeline()
                for part in request.requests:
                    getattr(pipe, part.name)(*part.args)
                return pipe.execute()
            return [self.execute(part) for part in request.requests]
        if kind is ScanBatch:
            if request.found is None:
                request.found = client.scan_iter(match=request.pattern, count=_BATCH)
            return list(islice(request.found, _BATCH))
        return super().execute(request)

    async def execute_async(self, request: Any) -> Any:
        """Do one request of the request path with this event loop's client."""
        client = await self._async_clients.get()
        kind = type(request)
        if kind is Eval:
            return await _evalsha_async(client, self._async_clients, request)
        if kind is Command:
            return await getattr(client, request.name)(*request.args)
        if kind is Together:
            # Each key is in its own slot, perhaps on its own node: ask them all at once.
            return list(await asyncio.gather(*(self.execute_async(part) for part in request.requests)))
        return await super().execute_async(request)

    def blocking_client(self) -> AnyRedis:
        """The blocking redis-py client this store uses (built on first use), e.g. to carry the cache's channel."""
        return self._sync_client.get()

    def close(self) -> None:
        """Close the blocking client (asyncio clients close with their event loop, or via ``aio.close()``).

        Nothing for a namespace view: the clients belong to the store that built the view. The
        asyncio clients of event loops that have stopped are closed too.
        """
        if self._owner:
            self._sync_client.close()
            self._async_clients.close_idle()

    async def aclose(self) -> None:
        """Close this event loop's client if this store built it (nothing for a namespace view)."""
        if self._owner:
            await self._async_clients.close()

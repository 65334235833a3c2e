"""``RedisStore``: the Redis store, built from a URL or from your clients, and doing its requests.

The operations themselves are flows written once in ``flows``; this class owns the clients and
does each request on the blocking side (``execute``) or the asyncio side (``execute_async``).
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable
from itertools import islice
from typing import Any, Optional, Union
from urllib.parse import quote

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.cluster

from authx_epoch.errors import ConfigurationError
from authx_epoch.stores.contract import Store
from authx_epoch.stores.namespaces import ROOT_NAMESPACE
from authx_epoch.stores.redis.clients import (
    POOL_SIZE,
    POOL_WAIT,
    AnyAsyncRedis,
    AnyRedis,
    AsyncClients,
    SyncClient,
    async_retry_policy,
    cluster_nodes,
    decodes_responses,
    host_port,
    location_of,
    missing_client,
    plain_settings,
    retry_policy,
    timeout_setting,
)
from authx_epoch.stores.redis.flows import RedisFlows
from authx_epoch.stores.redis.keys import DEFAULT_PREFIX, RECORD_FIELD
from authx_epoch.stores.redis.keyspace import KeySpace
from authx_epoch.stores.redis.requests import Command, Eval, ScanBatch, Together, evalsha, evalsha_async
from authx_epoch.stores.redis.scripts import CHECK, Call
from authx_epoch.stores.redis.slots import (
    CLUSTER_READS,
    NOT_ANSWERED,
    PipeSlot,
    check_script,
    cluster_read,
    read_beside,
)
from authx_epoch.stores.url import StoreURL

_BATCH = 500


#: ``pack(b"HMGET", key, RECORD_FIELD, field)`` with its two variable parts left to fill: a
#: single format on every check instead of a loop over the parts.
_HMGET_RECORD = b"*4\r\n$5\r\nHMGET\r\n$%d\r\n%s\r\n$1\r\n" + RECORD_FIELD + b"\r\n$%d\r\n%s\r\n"


async def _tracked_check(slot: PipeSlot, call: Call) -> Any:
    """The answer of the check script for ``call`` (user and global keys, no session), from one ``HMGET``.

    The global record comes from the check connection's tracked copy (``slots.read_beside``);
    ``NOT_ANSWERED`` when the connection does not track, and the script answers instead.
    """
    user_key, global_key = call.keys
    field = call.args[0]
    packed = _HMGET_RECORD % (len(user_key), user_key, len(field), field)
    found = await read_beside(slot, packed, global_key)
    if found is NOT_ANSWERED:
        return NOT_ANSWERED
    (record, entry), global_record = found
    return [record, entry, global_record, None]


class RedisStore(RedisFlows):
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
    ``<prefix>~<namespace>:`` (see ``authx_epoch.stores.redis.keys``); a view never closes the clients.

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
        if decodes_responses(client) or decodes_responses(sync_client):
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
            settings = plain_settings(client)
            sync_owned = True
            if settings is None:
                sync_factory = missing_client("blocking (sync_client=redis.Redis(...))", "an asyncio client")
            else:
                sync_factory = lambda: redis.Redis(retry=retry_policy(), **settings)  # noqa: E731
        async_settings = plain_settings(sync_client) if client is None else {}
        if async_settings is None:
            async_factory = missing_client("asyncio (client=redis.asyncio.Redis(...))", "a blocking client")
        else:
            async_factory = lambda: redis.asyncio.Redis(retry=async_retry_policy(), **async_settings)  # noqa: E731
        location = location_of(sync_client if sync_client is not None else client, keys.prefix)
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
        self._sync_client = SyncClient(sync_factory, sync_owned)
        self._async_clients = AsyncClients(async_factory, async_fixed, keys.probe_key)
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
            "socket_timeout": timeout_setting(
                "socket_timeout", socket_timeout if socket_timeout is not None else parsed.option("socket_timeout")
            ),
            "socket_connect_timeout": timeout_setting(
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
            nodes, credentials = cluster_nodes(cleaned)
            settings = {**credentials, **timeouts, "ssl": scheme == "rediss+cluster"}

            def sync_cluster() -> AnyRedis:
                startup = [redis.cluster.ClusterNode(host, port) for host, port in nodes]  # type: ignore[no-untyped-call]
                return redis.cluster.RedisCluster(startup_nodes=startup, retry=retry_policy(), **settings)

            def async_cluster() -> AnyAsyncRedis:
                startup = [redis.asyncio.cluster.ClusterNode(host, port) for host, port in nodes]
                return redis.asyncio.cluster.RedisCluster(startup_nodes=startup, retry=async_retry_policy(), **settings)

            keys = KeySpace(key_prefix, cluster=True, namespace=namespace)
            where = ",".join(sorted(host_port(host, port) for host, port in nodes))
            location = f"redis+cluster://{where}?prefix={quote(keys.prefix, safe=':')}"
            self._init(keys, "redis+cluster", sync_cluster, True, async_cluster, None, location)
            return self
        try:
            probe = redis.Redis.from_url(cleaned, retry=retry_policy(), **timeouts)
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
                cleaned, retry=async_retry_policy(), timeout=POOL_WAIT, **{"max_connections": POOL_SIZE, **timeouts}
            )
            return redis.asyncio.Redis.from_pool(pool)

        self._init(keys, "redis", lambda: probe, True, async_single, None, location_of(probe, keys.prefix))
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

    # -- I/O: the requests, done on each side ------------------------------------------------------

    def execute(self, request: Any) -> Any:
        """Do one request with the blocking client."""
        client = self._sync_client.get()
        kind = type(request)
        if kind is Eval:
            return evalsha(client, self._sync_client, request)
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
        clients = self._async_clients
        client = await clients.get()
        kind = type(request)
        if kind is Eval:
            main = clients.pipes.main if clients.pipes is not None else None
            if request.read_only and main is not None and clients.read_only_scripts:
                # The check: through this loop's pipelined connection when it can answer; with
                # the global record tracked there, as one HMGET of the user's hash.
                if request.call.script is CHECK and len(request.call.keys) == 2:
                    reply = await _tracked_check(main, request.call)
                    if reply is not NOT_ANSWERED:
                        return reply
                reply = await check_script(main, request.call)
                if reply is not NOT_ANSWERED:
                    return reply
            return await evalsha_async(client, clients, request)
        if kind is Command:
            pipes = clients.pipes
            if pipes is not None and pipes.main is None and request.name in CLUSTER_READS:
                # A Cluster check's read: through the key's node's pipelined connection.
                assert isinstance(client, redis.asyncio.cluster.RedisCluster)
                node = client.get_node_from_key(request.args[0])
                if node is not None:
                    slot = pipes.node(node.host, int(node.port), client.get_nodes)
                    reply = await cluster_read(slot, request.name, request.args)
                    if reply is not NOT_ANSWERED:
                        return reply
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

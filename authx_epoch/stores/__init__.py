"""Stores: where epochs and revoked ids live, chosen by URL or given as an object.

``open_store`` is the one place that turns a URL into a backend:

| URL | backend |
|---|---|
| ``memory://`` | ``MemoryStore``: this process only |
| ``sqlite:///relative/path.db``, ``sqlite:////absolute/path.db`` | ``SqliteStore``: every process of one machine |
| ``redis://``, ``rediss://``, ``unix://`` | ``RedisStore``: every process that reaches the Redis (extra ``redis``) |
| ``redis+cluster://h1:p1,h2:p2``, ``rediss+cluster://`` | ``RedisStore`` on Redis Cluster (extra ``redis``) |

Add ``?local_cache=1`` to a Redis URL to wrap the store in a ``LocalCache`` (see ``stores.cache``).

``open_store(spec, namespace="name")`` opens the store in a namespace: several AuthX instances
(or apps) can share one file or one Redis prefix without sharing a record (see ``stores.contract``).
"""

from __future__ import annotations

import os
from typing import Union

from authx_epoch.errors import ConfigurationError
from authx_epoch.stores.contract import AsyncStore, Store, SyncStore
from authx_epoch.stores.memory import MemoryStore
from authx_epoch.stores.namespaces import ROOT_NAMESPACE, check_namespace
from authx_epoch.stores.sqlite import SqliteStore
from authx_epoch.stores.url import StoreURL

__all__ = [
    "ROOT_NAMESPACE",
    "AsyncStore",
    "MemoryStore",
    "SqliteStore",
    "Store",
    "StoreURL",
    "SyncStore",
    "check_namespace",
    "open_store",
]

#: What ``install(store=...)`` accepts: a URL or a ready backend object.
StoreSpec = Union[str, os.PathLike[str], Store]


def open_store(spec: StoreSpec, *, namespace: str = ROOT_NAMESPACE) -> Store:
    """Return the backend that ``spec`` names, in ``namespace``.

    Args:
        spec: A store URL (see the module docs) or an object that already is a store (it has
            ``.sync`` and ``.aio`` sides, ``namespace``, ``location`` and ``with_namespace``).
        namespace: The namespace to work in (``""``: the root). For a URL, the store is built in
            it (and ``close()`` on the result releases its connections). A store object is
            returned unchanged when ``namespace`` is ``""`` or its own; otherwise the result is
            ``spec.with_namespace(namespace)``, a view that closes nothing (close ``spec``).

    Raises:
        ConfigurationError: The URL is malformed, its scheme is unknown, the store cannot be
            opened, or the namespace is not a valid name.
    """
    namespace = check_namespace(namespace)
    if isinstance(spec, Store):
        return spec if namespace in (ROOT_NAMESPACE, spec.namespace) else spec.with_namespace(namespace)
    if isinstance(spec, os.PathLike):
        return SqliteStore(spec, namespace=namespace)
    if hasattr(spec, "sync") and hasattr(spec, "aio"):
        # An object written against the contract before namespaces: say what it lacks.
        raise ConfigurationError(
            f"{type(spec).__name__} has .sync and .aio but is not a store: a store object also has "
            "namespace, location and with_namespace() (see authx_epoch.stores.Store)"
        )
    if not isinstance(spec, str):
        raise ConfigurationError(
            f"store must be a URL such as 'sqlite:///authx-epoch.db' or a store object, got {type(spec).__name__}"
        )
    url = StoreURL.parse(spec)
    if url.kind == "memory":
        return MemoryStore(namespace=namespace)
    if url.kind == "sqlite":
        return SqliteStore(url.path, namespace=namespace)
    return _open_redis(url, namespace)


def _open_redis(url: StoreURL, namespace: str) -> Store:
    # Imported here: redis is an optional dependency, and memory/SQLite users never load it.
    try:
        from authx_epoch.stores.redis import RedisStore
    except ImportError as exc:
        if exc.name is not None and exc.name.split(".")[0] in ("redis", "hiredis"):
            raise ConfigurationError(
                f"the store URL {url.scheme}://... needs the redis client: pip install 'authx-epoch[redis]'"
            ) from exc
        raise
    from authx_epoch.stores.cache import LocalCache, cache_options

    options = cache_options(url)
    store = RedisStore.from_url(url, namespace=namespace)
    return store if options is None else LocalCache(store, **options)

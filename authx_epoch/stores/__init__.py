"""Stores: where epochs and revoked ids live, chosen by URL or given as an object.

``open_store`` is the one place that turns a URL into a backend:

| URL | backend |
|---|---|
| ``memory://`` | ``MemoryStore``: this process only |
| ``sqlite:///relative/path.db``, ``sqlite:////absolute/path.db`` | ``SqliteStore``: every process of one machine |
| ``redis://``, ``rediss://``, ``unix://`` | ``RedisStore``: every process that reaches the Redis (extra ``redis``) |
| ``redis+cluster://h1:p1,h2:p2``, ``rediss+cluster://`` | ``RedisStore`` on Redis Cluster (extra ``redis``) |

Add ``?local_cache=1`` to a Redis URL to wrap the store in a ``LocalCache`` (see ``stores.cache``).
"""

from __future__ import annotations

import os
from typing import Union
from urllib.parse import urlsplit

from authx_epoch.errors import ConfigurationError
from authx_epoch.stores.base import AsyncFromSync, AsyncStore, Store, SyncStore
from authx_epoch.stores.memory import MemoryStore
from authx_epoch.stores.sqlite import SqliteStore

__all__ = ["AsyncFromSync", "AsyncStore", "MemoryStore", "SqliteStore", "Store", "SyncStore", "open_store"]

#: What ``install(store=...)`` accepts: a URL or a ready backend object.
StoreSpec = Union[str, os.PathLike[str], Store]

_SCHEMES = ("memory://", "sqlite:///", "redis://", "rediss://", "unix://", "redis+cluster://", "rediss+cluster://")
_REDIS_SCHEMES = ("redis", "rediss", "unix", "redis+cluster", "rediss+cluster")


def open_store(spec: StoreSpec) -> Store:
    """Return the backend that ``spec`` names.

    Args:
        spec: A store URL (see the module docs) or an object that already is a store (it has
            ``.sync`` and ``.aio`` sides), returned unchanged.

    Raises:
        ConfigurationError: The URL is malformed, its scheme is unknown, or the store cannot be opened.
    """
    if isinstance(spec, Store):
        return spec
    if isinstance(spec, os.PathLike):
        return SqliteStore(spec)
    if not isinstance(spec, str):
        raise ConfigurationError(
            f"store must be a URL such as 'sqlite:///revocation.db' or a store object, got {type(spec).__name__}"
        )
    scheme = urlsplit(spec).scheme.lower()
    if scheme == "memory":
        if spec.lower().rstrip("/") != "memory:":
            raise ConfigurationError(f"memory:// takes no host, path or options, got {spec!r}")
        return MemoryStore()
    if scheme == "sqlite":
        if not spec.lower().startswith("sqlite:///") or len(spec) == len("sqlite:///"):
            raise ConfigurationError(
                "a SQLite store URL needs a path: 'sqlite:///relative.db' or 'sqlite:////absolute/path.db', "
                f"got {spec!r}"
            )
        return SqliteStore(spec[len("sqlite:///") :])
    if scheme in _REDIS_SCHEMES:
        return _open_redis(spec)
    known = ", ".join(_SCHEMES)
    raise ConfigurationError(f"unknown store URL {spec!r}: the schemes known are {known}")


def _open_redis(url: str) -> Store:
    # Imported here: redis is an optional dependency, and memory/SQLite users never load it.
    try:
        from authx_epoch.stores.redis import RedisStore
    except ImportError as exc:
        if exc.name is not None and exc.name.split(".")[0] in ("redis", "hiredis"):
            raise ConfigurationError(
                f"the store URL {url.split('://')[0]}://... needs the redis client: pip install 'authx-epoch[redis]'"
            ) from exc
        raise
    from authx_epoch.stores.cache import LocalCache, split_cache_options

    url, cache_options = split_cache_options(url)
    store = RedisStore.from_url(url)
    return store if cache_options is None else LocalCache(store, **cache_options)

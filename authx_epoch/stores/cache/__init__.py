"""An opt-in local cache in front of a network store, kept fresh by a Redis pub/sub channel.

Turn it on with one URL option, ``redis://host:6379/0?local_cache=1`` (optionally
``&cache_staleness=0.5`` and ``&cache_max_entries=10000``), or wrap a store object:
``LocalCache(RedisStore(...), staleness=0.5)``.

Each process keeps what its checks have read (user records, the global record, and whether a jti
or a session is revoked, "not revoked" included), each part with the time it was confirmed by the
store. A check is answered from memory only when every part it needs was confirmed less than
``staleness`` seconds ago *and* the invalidation channel is connected; otherwise it reads the
store (one round trip, as without the cache) and refreshes those parts. Over Redis, a versioned
store (``stores.versions``), a user is kept whole (record, version, every revoked jti), so any
token of the user is answered, and what answered a check in the last ``10 * staleness`` seconds
is confirmed every ``staleness / 2`` by one read of versions: an active user stays in memory for
as long as it stays unchanged.

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

The package, one module per part: ``changes`` (what the channel carries), ``options`` (defaults and
URL options), ``memory`` (what one process remembers), ``channel`` (publishing and the subscriber
thread) and ``store`` (``LocalCache`` itself).
"""

from __future__ import annotations

from authx_epoch.stores.cache.changes import Change
from authx_epoch.stores.cache.memory import MAX_JTIS_PER_USER, MonotonicClock
from authx_epoch.stores.cache.options import DEFAULT_MAX_ENTRIES, DEFAULT_STALENESS, MAX_STALENESS, cache_options
from authx_epoch.stores.cache.store import LocalCache, Offload, Publish

__all__ = [
    "DEFAULT_MAX_ENTRIES",
    "DEFAULT_STALENESS",
    "MAX_JTIS_PER_USER",
    "MAX_STALENESS",
    "Change",
    "LocalCache",
    "MonotonicClock",
    "Offload",
    "Publish",
    "cache_options",
]

"""``redis://``, ``rediss://``, ``unix://`` and ``redis+cluster://``: the store shared by every worker.

Needs the ``redis`` extra: ``pip install 'authx-epoch[redis]'``.

One check is one ``EVALSHA_RO`` of a read-only script on one Redis (one command, one round
trip). On Redis Cluster a user's record and revoked jtis share one key (a hash), while the global
record and session records live in slots of their own; the check reads them with one command per
key, sent to their nodes in parallel (2 commands, 3 with a session id; one round trip of wall
time). Writes are Lua scripts,
so concurrent bumps never lose an increment. Every driver error or timeout becomes
``StoreUnavailableError`` (a 503 in fail-closed mode); the client reconnects on its own, so
service resumes when Redis is back.

The package, from the keys up (the first four modules are pure, no I/O):

* ``keys``: the key layout, and the digests that name ids in keys;
* ``values``: the msgpack values in those keys, written and read back;
* ``scripts``: the Lua scripts (``lua/``) that make the writes atomic, and ``Call``;
* ``keyspace``: ``KeySpace``, the keys and script calls of one store and the reading of answers;
* ``requests``: what a flow asks of Redis (``Eval``, ``Command``, ``Together``, ``ScanBatch``);
* ``flows``: the contract's operations, each once, as flows of those requests;
* ``clients``: the redis-py clients, their settings, and closing them;
* ``store``: ``RedisStore``, which builds the clients and does the requests.
"""

from authx_epoch.stores.redis.clients import DEFAULT_TIMEOUT
from authx_epoch.stores.redis.clients import POOL_SIZE as POOL_SIZE
from authx_epoch.stores.redis.clients import POOL_WAIT as POOL_WAIT
from authx_epoch.stores.redis.keys import DEFAULT_PREFIX
from authx_epoch.stores.redis.store import RedisStore

__all__ = ["DEFAULT_PREFIX", "DEFAULT_TIMEOUT", "RedisStore"]

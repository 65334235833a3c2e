"""Redis clients you build yourself: here, Sentinel (nothing connects yet)."""

from redis.asyncio.sentinel import Sentinel as AsyncSentinel
from redis.sentinel import Sentinel

from authx_epoch.stores.redis import RedisStore

nodes = [("sentinel-1", 26379), ("sentinel-2", 26379), ("sentinel-3", 26379)]
timeouts = {"socket_timeout": 0.25, "socket_connect_timeout": 0.25}
async_sentinel = AsyncSentinel(nodes, **timeouts)
sync_sentinel = Sentinel(nodes, **timeouts)
store = RedisStore(
    # The asyncio client serves the checks...
    client=async_sentinel.master_for("mymaster", **timeouts),
    # ...the blocking one stamps tokens and serves revocation.sync.
    sync_client=sync_sentinel.master_for("mymaster", **timeouts),
    prefix="myapp",
)
assert store.kind == "redis"

"""Redis Cluster: list a few nodes; the client finds the rest."""

from authx_epoch.stores.redis import RedisStore

nodes = "10.0.0.1:7000,10.0.0.2:7000,10.0.0.3:7000"
store = RedisStore.from_url(f"redis+cluster://{nodes}?prefix=myapp")
assert store.kind == "redis+cluster"  # nothing connects until the first use

"""The variants under test, built the same way in-process and in every uvicorn worker.

* ``floor``: AuthX with no blocklist callback, the cost every variant is compared with;
* ``seed-set`` and ``seed-redis``: the blocklists of AuthX's revocation guide (the pattern this
  library replaces): an in-memory set of whole tokens, and one Redis key per revoked token
  checked with ``EXISTS``;
* ``epoch-*``: this library installed with each store.

Each variant comes with an accepted token and a revoked one; ``verify`` proves the variant really
checks (the revoked one gets a 401) before anything is timed.
"""

# No "from __future__ import annotations": FastAPI must see the route's real annotations.

import dataclasses
import datetime as dt
import os
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Optional

import redis
import redis.asyncio
from authx import AuthX, AuthXConfig, TokenPayload
from fastapi import Depends, FastAPI

import authx_epoch
from authx_epoch.records import EpochRecord, SnapshotEntry
from authx_epoch.stores import MemoryStore, Store

SECRET = "authx-epoch-bench-secret-0123456789abcdef"
UID = "bench-user-0001"
#: Revoked entries put in every blocklist so that no variant checks an empty structure.
BACKGROUND_REVOKED = 1000


@dataclass(frozen=True)
class Variant:
    """One configuration to measure."""

    name: str
    label: str
    needs: str = ""  # "redis", "cluster", "cache": what must be available

    @property
    def is_epoch(self) -> bool:
        """Whether this variant is authx-epoch (rather than the floor or a seed blocklist)."""
        return self.name.startswith("epoch-")


VARIANTS = [
    Variant("floor", "floor: AuthX, no callback"),
    Variant("seed-set", "seed: set of tokens in memory"),
    Variant("seed-redis", "seed: Redis EXISTS per token", needs="redis"),
    Variant("epoch-memory", "authx-epoch, memory"),
    Variant("epoch-sqlite", "authx-epoch, SQLite"),
    Variant("epoch-redis", "authx-epoch, Redis", needs="redis"),
    Variant("epoch-redis-cache", "authx-epoch, Redis + local cache", needs="cache"),
    Variant("epoch-cluster", "authx-epoch, Redis Cluster", needs="cluster"),
]
BY_NAME = {variant.name: variant for variant in VARIANTS}


@dataclass
class Environment:
    """What the variants need from outside: file paths and server URLs (JSON-serialisable).

    Attributes:
        directory: A scratch directory (the SQLite file lives there).
        redis_url: The bench's own Redis server, if any.
        cluster_url: The bench's own Redis Cluster, if any.
        memory_snapshot: The memory store's state, so that every uvicorn worker accepts the
            same token (each worker has its own memory store).
        tokens: Per variant, ``[accepted token, revoked token]``.
    """

    directory: str
    redis_url: Optional[str] = None
    cluster_url: Optional[str] = None
    memory_snapshot: list[dict[str, Any]] = field(default_factory=list)
    tokens: dict[str, list[str]] = field(default_factory=dict)

    @property
    def sqlite_path(self) -> Path:
        """The SQLite store's file."""
        return Path(self.directory) / "bench.db"


def redis_store_class() -> Any:
    """``RedisStore``, or ``None`` when the Redis store or its driver is not importable."""
    try:
        from authx_epoch.stores.redis import RedisStore
    except ImportError:
        return None
    return RedisStore


def redis_store(url: Optional[str], prefix: str) -> Store:
    """The library's Redis store for ``url``.

    Timeouts are longer than the default 0.25 s: a loaded benchmark machine must not turn a slow
    connect into a 503 that ends the run. They do not change what a check costs.
    """
    assert url is not None
    store: Store = redis_store_class().from_url(url, prefix=prefix, socket_timeout=5.0, socket_connect_timeout=5.0)
    return store


def cached_store(inner: Store) -> Optional[Store]:
    """The inner store wrapped in the local cache, or ``None`` when the cache module does not exist yet."""
    try:
        from authx_epoch.stores.cache import LocalCache
    except ImportError:
        return None
    store: Store = LocalCache(inner)
    return store


def _has_cache() -> bool:
    try:
        import authx_epoch.stores.cache  # noqa: F401
    except ImportError:
        return False
    return True


def unavailable(variant: Variant, env: Environment) -> Optional[str]:
    """Why ``variant`` cannot run here, or ``None`` if it can."""
    if variant.needs in ("redis", "cache", "cluster") and env.redis_url is None:
        return "no redis-server"
    if variant.is_epoch and variant.needs and redis_store_class() is None:
        return "authx_epoch.stores.redis is not importable"
    if variant.needs == "cluster" and env.cluster_url is None:
        return "no Redis Cluster"
    if variant.needs == "cache" and not _has_cache():
        return "authx_epoch.stores.cache does not exist yet"
    return None


def make_auth() -> AuthX[Any]:
    """The AuthX instance every variant uses: HS256, tokens in the Authorization header."""
    config = AuthXConfig(
        JWT_SECRET_KEY=SECRET,
        JWT_TOKEN_LOCATION=["headers"],
        JWT_ACCESS_TOKEN_EXPIRES=dt.timedelta(hours=2),
    )
    return AuthX(config=config)


def make_app(auth: AuthX[Any]) -> FastAPI:
    """A FastAPI app with one protected route, as an application writes it."""
    app = FastAPI()

    @app.get("/protected")
    async def protected(payload: Annotated[TokenPayload, Depends(auth.access_token_required)]) -> dict[str, Any]:
        return {"sub": payload.sub}

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return app


def fake_token(length: int) -> str:
    """A random string as long as a token (a blocklist entry's cost depends only on its length)."""
    return secrets.token_urlsafe(length)[:length]


@dataclass
class Built:
    """One variant, ready: its app, its AuthX, and the service when it is authx-epoch."""

    variant: Variant
    app: FastAPI
    auth: AuthX[Any]
    revocation: Optional[authx_epoch.EpochRevocation] = None
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    async def close(self) -> None:
        """Release the variant's clients."""
        for closer in self.closers:
            await closer()


def _entry_from_json(data: dict[str, Any]) -> SnapshotEntry:
    record = data.get("record")
    return SnapshotEntry(**{**data, "record": EpochRecord(**record) if record else None})


def _epoch_store(variant: Variant, env: Environment) -> Store:
    if variant.name == "epoch-memory":
        store = MemoryStore()
        store.import_entries([_entry_from_json(entry) for entry in env.memory_snapshot], 0.0)
        return store
    if variant.name == "epoch-sqlite":
        return authx_epoch.SqliteStore(env.sqlite_path)
    if variant.name == "epoch-redis":
        return redis_store(env.redis_url, "bench")
    if variant.name == "epoch-cluster":
        return redis_store(env.cluster_url, "bench")
    if variant.name == "epoch-redis-cache":
        wrapped = cached_store(redis_store(env.redis_url, "bench-cache"))
        assert wrapped is not None
        return wrapped
    raise ValueError(f"unknown variant {variant.name!r}")


def build(variant: Variant, env: Environment) -> Built:
    """Build ``variant``: an AuthX instance with its blocklist, in an app."""
    auth = make_auth()
    if variant.name == "floor":
        return Built(variant, make_app(auth), auth)
    if variant.name == "seed-set":
        revoked = {fake_token(330) for _ in range(BACKGROUND_REVOKED)}
        revoked.update(env.tokens.get(variant.name, [])[1:])

        def in_blocklist(token: str, **kwargs: Any) -> bool:
            return token in revoked

        auth.set_token_blocklist(in_blocklist)
        return Built(variant, make_app(auth), auth)
    if variant.name == "seed-redis":
        client = redis.asyncio.Redis.from_url(env.redis_url)  # type: ignore[arg-type]

        async def in_redis_blocklist(token: str, **kwargs: Any) -> bool:
            return bool(await client.exists("blocklist:" + token))

        auth.set_token_blocklist(in_redis_blocklist)
        return Built(variant, make_app(auth), auth, closers=[client.aclose])
    app = make_app(auth)
    store = _epoch_store(variant, env)
    revocation = authx_epoch.install(auth, store=store, app=app)
    return Built(variant, app, auth, revocation, closers=[store.aio.close])


def prepare(variant: Variant, env: Environment) -> None:
    """Mint the variant's two tokens and revoke the second, in the shared state every worker sees."""
    if variant.name in ("floor", "seed-set", "seed-redis"):
        auth = make_auth()
        tokens = [auth.create_access_token(uid=UID), auth.create_access_token(uid=UID)]
        env.tokens[variant.name] = tokens
        if variant.name == "seed-redis":
            client = redis.Redis.from_url(env.redis_url)  # type: ignore[arg-type]
            pipe = client.pipeline(transaction=False)
            for _ in range(BACKGROUND_REVOKED):
                pipe.set("blocklist:" + fake_token(len(tokens[0])), 1, ex=7200)
            pipe.set("blocklist:" + tokens[1], 1, ex=7200)
            pipe.execute()
            client.close()
        return
    auth = make_auth()
    store = _epoch_store(variant, env)
    revocation = authx_epoch.install(auth, store=store)
    tokens = [auth.create_access_token(uid=UID), auth.create_access_token(uid=UID)]
    revocation.sync.revoke_token(tokens[1])
    for index in range(BACKGROUND_REVOKED // 10):
        # Other users' bumps, so no variant checks an empty store.
        revocation.sync.bump_user_epoch(f"bench-other-{index}", reason="bench")
    if variant.name == "epoch-memory":
        env.memory_snapshot = [dataclasses.asdict(entry) for entry in store.sync.export_entries(0.0)]
    env.tokens[variant.name] = tokens
    store.sync.close()


def environment_from_os() -> tuple[Variant, Environment]:
    """The variant and environment a uvicorn worker was started with (see ``bench.server``)."""
    import json

    variant = BY_NAME[os.environ["AUTHX_EPOCH_BENCH_VARIANT"]]
    env = Environment(**json.loads(os.environ["AUTHX_EPOCH_BENCH_ENV"]))
    return variant, env

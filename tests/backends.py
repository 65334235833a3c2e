"""Every store backend the contract suite runs on: (fixture name, pytest mark).

Each fixture yields a fresh, empty store. Add a backend here and every contract test runs on it.
The Redis fixtures live in ``tests/plugins/redis_servers.py`` (``cached_redis_store`` is a
``RedisStore`` behind the local cache of ``authx_epoch.stores.cache``).
"""

from __future__ import annotations

import pytest

STORE_FIXTURES: list[tuple[str, pytest.MarkDecorator]] = [
    ("memory_store", pytest.mark.memory),
    ("sqlite_store", pytest.mark.sqlite),
    ("redis_store", pytest.mark.redis),
    ("cached_redis_store", pytest.mark.redis),
    ("cluster_store", pytest.mark.cluster),
]

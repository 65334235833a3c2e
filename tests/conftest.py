"""Fixtures shared by the whole suite: an injectable clock and one fresh store per backend.

Backends are listed in ``tests/backends.py``; ``store`` is parametrised over all of them, so a
contract test written once runs on every store. Select one backend with ``-m memory``,
``-m sqlite``, ``-m redis`` or ``-m cluster``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from authx_epoch import MemoryStore, SqliteStore
from authx_epoch.stores import Store
from tests.backends import STORE_FIXTURES

pytest_plugins = ["tests.plugins.redis_servers"]


class FakeClock:
    """A clock the test moves by hand; starts at the real time so AuthX's own ``exp`` agrees."""

    def __init__(self, start: float | None = None) -> None:
        self.now = time.time() if start is None else start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def memory_store() -> Iterator[Store]:
    store = MemoryStore()
    yield store
    store.close()


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[Store]:
    store = SqliteStore(tmp_path / "revocation.db")
    yield store
    store.close()


@pytest.fixture(params=[pytest.param(name, marks=mark) for name, mark in STORE_FIXTURES])
def store(request: pytest.FixtureRequest) -> Store:
    """A fresh, empty store of every backend in turn."""
    backend: Store = request.getfixturevalue(request.param)
    return backend


@pytest.fixture
def anyio_backend() -> str:
    """Async tests (``@pytest.mark.anyio``) run on asyncio, the loop FastAPI apps run on."""
    return "asyncio"

"""Fixtures shared by the whole suite: an injectable clock and one fresh store per backend.

Backends are listed in ``tests/backends.py``; ``store`` is parametrised over all of them, so a
contract test written once runs on every store. Select one backend with ``-m memory``,
``-m sqlite``, ``-m redis`` or ``-m cluster``.
"""

from __future__ import annotations

import gc
import sys
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
def any_store(request: pytest.FixtureRequest) -> Store:
    """A fresh, empty store of every backend in turn."""
    backend: Store = request.getfixturevalue(request.param)
    return backend


@pytest.fixture
def store(any_store: Store) -> Store:
    """A fresh, empty store of every backend in turn (the contract suite also runs it through its async side)."""
    return any_store


@pytest.fixture
def anyio_backend() -> str:
    """Async tests (``@pytest.mark.anyio``) run on asyncio, the loop FastAPI apps run on."""
    return "asyncio"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    """After each test module's last test, collect garbage and fail the module if it leaked.

    An unclosed socket or file warns only when the garbage collector finds it, which may be
    during any later test (CI once failed a namespaces test for Redis sockets other modules had
    left). Collecting here makes a leak fail the module that made it.
    """
    yield
    if nextitem is not None and nextitem.module is item.module:
        return
    leaks: list[str] = []
    previous = sys.unraisablehook
    sys.unraisablehook = lambda leak: leaks.append(f"{leak.exc_type.__name__}: {leak.exc_value}")
    try:
        gc.collect()
    finally:
        sys.unraisablehook = previous
    if leaks:
        raise AssertionError(
            f"{item.module.__name__ if item.module else item} leaked {len(leaks)} objects: " + "; ".join(leaks[:5])
        )

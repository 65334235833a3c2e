"""The contract suite runs every operation through both sides of every store.

``store`` is overridden here: the ``aio`` variant hands the tests a backend whose request-path
operations are the wrapped store's asyncio side, awaited in one event loop per test, so a test
written as ``store.sync.fetch(...)`` checks the async side too. Administration (stats, export,
import, wipe) exists on the blocking side only and goes there in both variants.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Optional

import pytest

from authx_epoch.stores import AsyncStore, Store
from authx_epoch.stores.contract import ADMIN
from tests.wrapping import MODES, WrappingStore


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class Loops:
    """One event loop per thread (the concurrency tests call the store from several threads)."""

    def __init__(self) -> None:
        self.local = threading.local()
        self.made: list[asyncio.AbstractEventLoop] = []
        self.lock = threading.Lock()

    def get(self) -> asyncio.AbstractEventLoop:
        loop: Optional[asyncio.AbstractEventLoop] = getattr(self.local, "loop", None)
        if loop is None:
            loop = self.local.loop = asyncio.new_event_loop()
            with self.lock:
                self.made.append(loop)
        return loop

    def close(self, store: Store) -> None:
        for loop in self.made:
            try:
                loop.run_until_complete(store.aio.close())
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()


class ThroughAsync(WrappingStore):
    """A backend answering each request-path operation through ``inner.aio`` (admin: ``inner.sync``)."""

    def __init__(self, inner: Store, loops: Loops) -> None:
        super().__init__(inner)
        self.loops = loops

    @property
    def aio(self) -> AsyncStore:
        """The wrapped store's own async side, for the tests that use it by name."""
        return self.inner.aio

    def forward(self, name: str, *args: Any) -> Any:
        if MODES[name] == ADMIN:
            return getattr(self.inner.sync, name)(*args)
        operation = getattr(self.inner.aio, name)
        if _loop_running():
            # Called from inside a test's own event loop: await it in a thread with a loop of its own.
            with ThreadPoolExecutor(1) as pool:
                return pool.submit(lambda: self.loops.get().run_until_complete(operation(*args))).result()
        return self.loops.get().run_until_complete(operation(*args))

    def with_namespace(self, namespace: str) -> ThroughAsync:
        return ThroughAsync(self.inner.with_namespace(namespace), self.loops)


@pytest.fixture(params=["sync", "aio"])
def store(any_store: Store, request: pytest.FixtureRequest) -> Iterator[Store]:
    """Every store, through its blocking side and (``aio``) through its asyncio side."""
    if request.param == "sync":
        yield any_store
        return
    loops = Loops()
    try:
        yield ThroughAsync(any_store, loops)
    finally:
        loops.close(any_store)

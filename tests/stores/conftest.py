"""The contract suite runs every operation through both sides of every store.

``store`` is overridden here: the ``aio`` variant hands the tests a backend whose request-path
operations are the wrapped store's asyncio side, awaited in one event loop per test, so a test
written as ``store.sync.fetch(...)`` checks the async side too. Administration (stats, export,
import, wipe) exists on the blocking side only and goes there in both variants.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Optional

import pytest

from authx_epoch.stores import AsyncStore, Store, SyncStore
from authx_epoch.stores.contract import ADMIN


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


class ThroughAsync(Store):
    """A backend answering each request-path operation through ``inner.aio`` (admin: ``inner.sync``)."""

    def __init__(self, inner: Store, loops: Loops) -> None:
        self.inner = inner
        self.kind = inner.kind
        self.loops = loops

    @property
    def aio(self) -> AsyncStore:
        """The wrapped store's own async side, for the tests that use it by name."""
        return self.inner.aio

    def _call(self, name: str, *args: Any) -> Any:
        if SyncStore.operations()[name].mode == ADMIN:
            return getattr(self.inner.sync, name)(*args)
        operation = getattr(self.inner.aio, name)
        if _loop_running():
            # Called from inside a test's own event loop: await it in a thread with a loop of its own.
            with ThreadPoolExecutor(1) as pool:
                return pool.submit(lambda: self.loops.get().run_until_complete(operation(*args))).result()
        return self.loops.get().run_until_complete(operation(*args))

    @property
    def namespace(self) -> str:
        return self.inner.namespace

    @property
    def location(self) -> str:
        return self.inner.location

    def with_namespace(self, namespace: str) -> ThroughAsync:
        return ThroughAsync(self.inner.with_namespace(namespace), self.loops)

    def close(self) -> None:
        self.inner.close()

    def setup(self, now: float) -> Any:
        return self._call("setup", now)

    def fetch(self, uid: str, jti: Optional[str], session_id: Optional[str], now: float) -> Any:
        return self._call("fetch", uid, jti, session_id, now)

    def issue(self, uid: str, now: float, expires_at: float, session_id: Optional[str] = None) -> Any:
        return self._call("issue", uid, now, expires_at, session_id)

    def rotate_session(
        self, session_id: str, uid: str, presented_generation: int, now: float, grace: float, expires_at: float
    ) -> Any:
        return self._call("rotate_session", session_id, uid, presented_generation, now, grace, expires_at)

    def get_session(self, session_id: str, now: float) -> Any:
        return self._call("get_session", session_id, now)

    def bump_user(self, uid: str, now: float, reason: Optional[str], expires_at: float) -> Any:
        return self._call("bump_user", uid, now, reason, expires_at)

    def bump_global(self, now: float, reason: Optional[str]) -> Any:
        return self._call("bump_global", now, reason)

    def revoke_token(self, uid: str, jti: str, expires_at: float, now: float) -> Any:
        return self._call("revoke_token", uid, jti, expires_at, now)

    def revoke_session(self, session_id: str, expires_at: float, now: float, uid: Optional[str] = None) -> Any:
        return self._call("revoke_session", session_id, expires_at, now, uid)

    def get_user(self, uid: str, now: float) -> Any:
        return self._call("get_user", uid, now)

    def get_global(self, now: float) -> Any:
        return self._call("get_global", now)

    def stats(self, now: float) -> Any:
        return self._call("stats", now)

    def export_entries(self, now: float) -> Any:
        return self._call("export_entries", now)

    def import_entries(self, entries: Iterable[Any], now: float) -> Any:
        return self._call("import_entries", entries, now)

    def wipe(self) -> Any:
        return self._call("wipe")


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

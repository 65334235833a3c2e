"""A store wrapper running a hook before chosen operations: another request's write, between a check and its act.

This is how the tests inject latency into a check-then-act without a sleep in the library: the
hook runs a whole other request (a "log out everywhere", a logout) at the exact point where a
busy store, a GC pause or a slow network would have let it land.

    hooked = HookedStore(store)
    hooked.before("issue", lambda: other.sync.bump_user_epoch("alice"))   # once, on either side

It is a backend of its own (``authx_epoch.stores.contract.Store``): each operation hands the
wrapped store's step on, after a request that runs the hook (awaited on the async side). Over a
local store it keeps the production path: reads inline, writes offloaded as the store's own.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Optional, Union

from authx_epoch.stores import Store
from authx_epoch.stores.contract import WRITE, Flow, SyncStore, flow_of

Hook = Callable[[], Union[Awaitable[None], None]]


def elsewhere(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call ``func`` in a context of its own, as another request (or process) would: it shares no request scope."""
    return contextvars.Context().run(func, *args, **kwargs)


@dataclass(frozen=True)
class _RunHook:
    hook: Hook


@dataclass(frozen=True)
class _Offload:
    call: Callable[[], Any]


class HookedStore(Store):
    """A store that runs one-shot hooks before chosen operations of its sync or async side."""

    yields_requests = True

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.kind = inner.kind
        self._hooks: dict[str, list[Hook]] = {}
        self.fired: list[str] = []

    @property
    def reads_inline(self) -> bool:
        return self.inner.reads_inline

    @property
    def namespace(self) -> str:
        return self.inner.namespace

    @property
    def location(self) -> str:
        return self.inner.location

    def with_namespace(self, namespace: str) -> HookedStore:
        return HookedStore(self.inner.with_namespace(namespace))

    def before(self, operation: str, hook: Hook) -> None:
        """Run ``hook`` the next time ``operation`` is called, on either side (once)."""
        self._hooks.setdefault(operation, []).append(hook)

    def take(self, operation: str) -> Optional[Hook]:
        hooks = self._hooks.get(operation)
        if not hooks:
            return None
        self.fired.append(operation)
        return hooks.pop(0)

    def pending(self) -> list[str]:
        return [name for name, hooks in self._hooks.items() for _ in hooks]

    def _hooked(self, name: str, *args: Any) -> Any:
        operation = getattr(self.inner, name)
        hook = self.take(name)
        mode = SyncStore.operations()[name].mode
        local_write = not self.inner.yields_requests and mode == WRITE and self.inner.offload_writes
        if hook is None and not local_write:
            return operation(*args)
        return self._flow(hook, operation, local_write, args)

    def _flow(
        self, hook: Optional[Hook], operation: Callable[..., Any], offload: bool, args: tuple[Any, ...]
    ) -> Flow[Any]:
        if hook is not None:
            yield _RunHook(hook)
        if offload:
            return (yield _Offload(lambda: operation(*args)))
        return (yield from flow_of(operation(*args)))

    def execute(self, request: Any) -> Any:
        if type(request) is _RunHook:
            done = request.hook()
            assert not inspect.isawaitable(done), "the sync side cannot wait for a coroutine hook"
            return None
        if type(request) is _Offload:
            return request.call()
        return self.inner.execute(request)

    async def execute_async(self, request: Any) -> Any:
        if type(request) is _RunHook:
            done = request.hook()
            if inspect.isawaitable(done):
                await done
            return None
        if type(request) is _Offload:
            return await asyncio.to_thread(request.call)
        return await self.inner.execute_async(request)

    def setup(self, now: float) -> Any:
        return self._hooked("setup", now)

    def fetch(self, uid: str, jti: Optional[str], session_id: Optional[str], now: float) -> Any:
        return self._hooked("fetch", uid, jti, session_id, now)

    def issue(self, uid: str, now: float, expires_at: float, session_id: Optional[str] = None) -> Any:
        return self._hooked("issue", uid, now, expires_at, session_id)

    def rotate_session(
        self, session_id: str, uid: str, presented_generation: int, now: float, grace: float, expires_at: float
    ) -> Any:
        return self._hooked("rotate_session", session_id, uid, presented_generation, now, grace, expires_at)

    def get_session(self, session_id: str, now: float) -> Any:
        return self._hooked("get_session", session_id, now)

    def bump_user(self, uid: str, now: float, reason: Optional[str], expires_at: float) -> Any:
        return self._hooked("bump_user", uid, now, reason, expires_at)

    def bump_global(self, now: float, reason: Optional[str]) -> Any:
        return self._hooked("bump_global", now, reason)

    def revoke_token(self, uid: str, jti: str, expires_at: float, now: float) -> Any:
        return self._hooked("revoke_token", uid, jti, expires_at, now)

    def revoke_session(self, session_id: str, expires_at: float, now: float, uid: Optional[str] = None) -> Any:
        return self._hooked("revoke_session", session_id, expires_at, now, uid)

    def get_user(self, uid: str, now: float) -> Any:
        return self._hooked("get_user", uid, now)

    def get_global(self, now: float) -> Any:
        return self._hooked("get_global", now)

    def stats(self, now: float) -> Any:
        return self._hooked("stats", now)

    def export_entries(self, now: float) -> Any:
        return self._hooked("export_entries", now)

    def import_entries(self, entries: Iterable[Any], now: float) -> Any:
        return self._hooked("import_entries", entries, now)

    def wipe(self) -> Any:
        return self._hooked("wipe")

    def close(self) -> None:
        self.inner.close()

    async def aclose(self) -> None:
        await self.inner.aclose()

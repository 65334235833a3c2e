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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Optional, Union

from authx_epoch.stores import Store
from authx_epoch.stores.contract import WRITE, Flow, flow_of
from tests.wrapping import MODES, WrappingStore

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


class HookedStore(WrappingStore):
    """A store that runs one-shot hooks before chosen operations of its sync or async side."""

    yields_requests = True

    def __init__(self, inner: Store) -> None:
        super().__init__(inner)
        self._hooks: dict[str, list[Hook]] = {}
        self.fired: list[str] = []

    @property
    def reads_inline(self) -> bool:
        return self.inner.reads_inline

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

    def forward(self, name: str, *args: Any) -> Any:
        operation = getattr(self.inner, name)
        hook = self.take(name)
        mode = MODES[name]
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

"""A store wrapper running a hook before chosen operations: another request's write, between a check and its act.

This is how the tests inject latency into a check-then-act without a sleep in the library: the
hook runs a whole other request (a "log out everywhere", a logout) at the exact point where a
busy store, a GC pause or a slow network would have let it land.

    hooked = HookedStore(store)
    hooked.before("issue", lambda: other.sync.bump_user_epoch("alice"))   # once, on either side
"""

from __future__ import annotations

import contextvars
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, Optional, TypeVar, Union

from authx_epoch.stores import AsyncFromSync, Store

Hook = Callable[[], Union[Awaitable[None], None]]
_R = TypeVar("_R")


def elsewhere(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call ``func`` in a context of its own, as another request (or process) would: it shares no request scope."""
    return contextvars.Context().run(func, *args, **kwargs)


class _Side:
    def __init__(self, inner: Any, owner: HookedStore, is_async: bool) -> None:
        self._inner = inner
        self._owner = owner
        self._async = is_async
        self.kind = inner.kind

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._inner, name)
        if not callable(target) or name.startswith("_"):
            return target
        owner = self._owner
        if self._async:

            async def call_async(*args: Any, **kwargs: Any) -> Any:
                hook = owner.take(name)
                if hook is not None:
                    done = hook()
                    if inspect.isawaitable(done):
                        await done
                return await target(*args, **kwargs)

            return call_async

        def call(*args: Any, **kwargs: Any) -> Any:
            hook = owner.take(name)
            if hook is not None:
                done = hook()
                assert not inspect.isawaitable(done), f"the sync side's {name} cannot wait for a coroutine"
            return target(*args, **kwargs)

        call.__name__ = name
        return call


class _HookedAsyncFromSync(AsyncFromSync):
    """The async side of a local store, whose writes may run an async hook first (another request)."""

    def __init__(self, sync: Any, owner: HookedStore, *, offload_writes: bool) -> None:
        super().__init__(sync, offload_writes=offload_writes)
        self._owner = owner

    async def _write(self, func: Callable[..., _R], *args: object) -> _R:
        hook = self._owner.take(func.__name__)
        if hook is not None:
            done = hook()
            if inspect.isawaitable(done):
                await done
        return await super()._write(func, *args)


class HookedStore:
    """A store that runs one-shot hooks before chosen operations of its sync or async side."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self._hooks: dict[str, list[Hook]] = {}
        self.fired: list[str] = []
        self._sync = _Side(inner.sync, self, is_async=False)
        self._aio: Any = _Side(inner.aio, self, is_async=True)
        if isinstance(inner.aio, AsyncFromSync):
            # A local store: keep the production path (async reads inline through the sync side).
            self._aio = _HookedAsyncFromSync(self._sync, self, offload_writes=inner.aio.offload_writes)

    @property
    def sync(self) -> Any:
        return self._sync

    @property
    def aio(self) -> Any:
        return self._aio

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

    def close(self) -> None:
        closer = getattr(self.inner, "close", None)
        if closer is not None:
            closer()

"""A backend that hands each operation to ``forward``: the base of the tests' store wrappers.

``HookedStore`` (a hook before an operation) and the contract suite's ``ThroughAsync`` (each
operation through the async side) differ only in what ``forward`` does; the list of operations
is written here once.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Optional

from authx_epoch.stores import Store, SyncStore

#: Each operation's mode (``read``, ``write``, ``admin``), by name.
MODES = {name: operation.mode for name, operation in SyncStore.operations().items()}


class WrappingStore(Store):
    """Wraps ``inner``; every operation is ``self.forward(name, *args)``."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.kind = inner.kind

    def forward(self, name: str, *args: Any) -> Any:
        raise NotImplementedError

    @property
    def namespace(self) -> str:
        return self.inner.namespace

    @property
    def location(self) -> str:
        return self.inner.location

    def with_namespace(self, namespace: str) -> Store:
        raise NotImplementedError

    def close(self) -> None:
        self.inner.close()

    async def aclose(self) -> None:
        await self.inner.aclose()

    def setup(self, now: float) -> Any:
        return self.forward("setup", now)

    def fetch(self, uid: str, jti: Optional[str], session_id: Optional[str], now: float) -> Any:
        return self.forward("fetch", uid, jti, session_id, now)

    def issue(self, uid: str, now: float, expires_at: float, session_id: Optional[str] = None) -> Any:
        return self.forward("issue", uid, now, expires_at, session_id)

    def rotate_session(
        self, session_id: str, uid: str, presented_generation: int, now: float, grace: float, expires_at: float
    ) -> Any:
        return self.forward("rotate_session", session_id, uid, presented_generation, now, grace, expires_at)

    def get_session(self, session_id: str, now: float) -> Any:
        return self.forward("get_session", session_id, now)

    def bump_user(self, uid: str, now: float, reason: Optional[str], expires_at: float) -> Any:
        return self.forward("bump_user", uid, now, reason, expires_at)

    def bump_global(self, now: float, reason: Optional[str]) -> Any:
        return self.forward("bump_global", now, reason)

    def revoke_token(self, uid: str, jti: str, expires_at: float, now: float) -> Any:
        return self.forward("revoke_token", uid, jti, expires_at, now)

    def revoke_session(self, session_id: str, expires_at: float, now: float, uid: Optional[str] = None) -> Any:
        return self.forward("revoke_session", session_id, expires_at, now, uid)

    def get_user(self, uid: str, now: float) -> Any:
        return self.forward("get_user", uid, now)

    def get_global(self, now: float) -> Any:
        return self.forward("get_global", now)

    def stats(self, now: float) -> Any:
        return self.forward("stats", now)

    def export_entries(self, now: float) -> Any:
        return self.forward("export_entries", now)

    def import_entries(self, entries: Iterable[Any], now: float) -> Any:
        return self.forward("import_entries", entries, now)

    def wipe(self) -> Any:
        return self.forward("wipe")

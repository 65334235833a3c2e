"""A bounded memo that many threads may read and fill at once, with no lock on the read path."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Generic, Optional, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class Memo(Generic[K, V]):
    """Remember up to ``size`` values; the oldest insertion goes first when it is full.

    First-in-first-out rather than least-recently-used: an LRU would write on every hit, and a hot
    entry that is evicted is simply computed again. The memo is shared by every thread of the
    process (sync endpoints run in a thread pool, AuthX's ``verify_token`` in whatever thread
    calls it), so two threads may evict at once; losing that race only means one entry too many
    was dropped.
    """

    __slots__ = ("_items", "get", "size")

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: dict[K, V] = {}
        #: The hit path is the dictionary's own ``get``: no Python frame per lookup.
        self.get: Callable[[K], Optional[V]] = self._items.get

    def put(self, key: K, value: V) -> None:
        """Remember ``value`` for ``key`` (nothing is kept when ``size`` is 0)."""
        items = self._items
        if self.size <= 0:
            return
        while len(items) >= self.size:
            # Another thread may evict the same entry, or change the dict while we look at it:
            # then look again, so the memo stays bounded.
            with contextlib.suppress(KeyError, RuntimeError, StopIteration):
                del items[next(iter(items))]
        items[key] = value

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[K]:
        return iter(list(self._items))

    def clear(self) -> None:
        """Forget everything."""
        self._items.clear()

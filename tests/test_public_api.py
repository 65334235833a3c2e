"""The public face: what ``import authx_epoch`` offers is sorted, complete and documented."""

from __future__ import annotations

import inspect

import authx_epoch
import authx_epoch.stores


def _sort_key(name: str) -> tuple[int, str]:
    # Constants first, then classes, then functions: the order ruff's RUF022 keeps.
    if name.isupper():
        return (0, name)
    if name[:1].isupper():
        return (1, name)
    return (2, name)


def test_all_is_sorted() -> None:
    assert authx_epoch.__all__ == sorted(authx_epoch.__all__, key=_sort_key)


def test_all_is_complete() -> None:
    public = {
        name
        for name, value in vars(authx_epoch).items()
        if not name.startswith("_") and not inspect.ismodule(value) and name not in {"annotations"}
    }
    assert public == set(authx_epoch.__all__)


def test_every_public_name_is_importable_and_documented() -> None:
    for name in authx_epoch.__all__:
        value = getattr(authx_epoch, name)
        if inspect.isclass(value) or inspect.isfunction(value):
            assert inspect.getdoc(value), f"{name} has no docstring"


def test_stores_expose_every_backend() -> None:
    for name in authx_epoch.stores.__all__:
        assert getattr(authx_epoch.stores, name) is not None
    assert {"MemoryStore", "SqliteStore", "open_store"} <= set(authx_epoch.stores.__all__)

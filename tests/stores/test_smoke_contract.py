from __future__ import annotations

from authx_epoch.stores import Store


def test_setup_creates_the_global_record(store: Store) -> None:
    record = store.sync.setup(1000.0)
    assert record.created_at == 1000.0
    assert store.sync.get_global(1000.0) == record

"""The store contract, run on every backend listed in ``tests/backends.py``.

A new backend passes this file by adding one fixture entry there. Every test drives time through
the ``now`` argument, so nothing sleeps.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from authx_epoch import InvalidArgumentError, MemoryStore
from authx_epoch.records import EpochRecord, SessionRecord, SnapshotEntry, Stamps, clock_epoch
from authx_epoch.stores import AsyncStore, Store, SyncStore

T0 = 1_700_000_000.0
HOUR = 3600.0


def test_store_exposes_both_sides_of_the_contract(store: Store) -> None:
    assert isinstance(store, Store)
    assert isinstance(store.sync, SyncStore)
    assert isinstance(store.aio, AsyncStore)
    assert store.sync.kind == store.aio.kind
    assert isinstance(store.sync.kind, str)
    assert store.sync.kind


# -- setup ---------------------------------------------------------------------------------


def test_setup_creates_the_global_record_at_the_clock_value(store: Store) -> None:
    record = store.sync.setup(T0)
    assert record.epoch == clock_epoch(T0)
    assert record.created_at == T0
    assert record.bumped_at is None
    assert record.expires_at is None
    assert store.sync.get_global(T0) == record


def test_setup_is_idempotent_and_keeps_created_at(store: Store) -> None:
    first = store.sync.setup(T0)
    again = store.sync.setup(T0 + 500)
    assert again == first
    assert store.sync.get_global(T0 + 500) == first


def test_setup_after_a_bump_keeps_the_bumped_record(store: Store) -> None:
    store.sync.setup(T0)
    bumped = store.sync.bump_global(T0 + 1, "rotation")
    assert store.sync.setup(T0 + 2) == bumped


# -- issue ---------------------------------------------------------------------------------


def test_issue_on_an_empty_store_creates_both_records_at_the_clock_value(store: Store) -> None:
    stamps = store.sync.issue("alice", T0, T0 + 900)
    assert stamps == Stamps(user_epoch=clock_epoch(T0), global_epoch=clock_epoch(T0))
    user = store.sync.get_user("alice", T0)
    assert user is not None
    assert user.epoch == stamps.user_epoch
    assert user.created_at == T0
    assert user.bumped_at is None
    assert user.expires_at is not None
    assert user.expires_at >= T0 + 900
    global_ = store.sync.get_global(T0)
    assert global_ is not None
    assert global_.epoch == stamps.global_epoch


def test_issue_uses_the_existing_global_and_user_records(store: Store) -> None:
    store.sync.setup(T0)
    first = store.sync.issue("alice", T0 + 10, T0 + 900)
    assert first == Stamps(user_epoch=clock_epoch(T0 + 10), global_epoch=clock_epoch(T0))
    assert store.sync.issue("alice", T0 + 20, T0 + 900) == first
    other = store.sync.issue("bob", T0 + 30, T0 + 900)
    assert other.user_epoch == clock_epoch(T0 + 30)
    assert other.global_epoch == first.global_epoch


def test_issue_keeps_the_user_record_alive_as_long_as_its_tokens(store: Store) -> None:
    first = store.sync.issue("alice", T0, T0 + 100)
    again = store.sync.issue("alice", T0 + 50, T0 + 10 * HOUR)
    assert again == first
    user = store.sync.fetch("alice", None, None, T0 + 9 * HOUR).user
    assert user is not None
    assert user.epoch == first.user_epoch


def test_issue_never_shortens_a_user_record(store: Store) -> None:
    store.sync.issue("alice", T0, T0 + 10 * HOUR)
    store.sync.issue("alice", T0 + 1, T0 + 60)
    assert store.sync.get_user("alice", T0 + 9 * HOUR) is not None


def test_issue_returns_the_bumped_epoch(store: Store) -> None:
    store.sync.issue("alice", T0, T0 + 900)
    bumped = store.sync.bump_user("alice", T0 + 5, "logout-all", T0 + HOUR)
    assert store.sync.issue("alice", T0 + 6, T0 + 900).user_epoch == bumped.epoch
    global_bumped = store.sync.bump_global(T0 + 7, None)
    assert store.sync.issue("alice", T0 + 8, T0 + 900).global_epoch == global_bumped.epoch


# -- bump ----------------------------------------------------------------------------------


def test_bump_moves_to_the_clock_value_when_it_is_ahead(store: Store) -> None:
    stamps = store.sync.issue("alice", T0, T0 + 900)
    record = store.sync.bump_user("alice", T0 + 30, "password_change", T0 + HOUR)
    assert record.epoch == clock_epoch(T0 + 30)
    assert record.epoch > stamps.user_epoch
    assert record.reason == "password_change"
    assert record.bumped_at == T0 + 30
    assert record.created_at == T0
    assert store.sync.get_user("alice", T0 + 30) == record


def test_bump_moves_by_one_when_the_clock_is_not_ahead(store: Store) -> None:
    stamps = store.sync.issue("alice", T0, T0 + 900)
    first = store.sync.bump_user("alice", T0, "a", T0 + HOUR)
    assert first.epoch == stamps.user_epoch + 1
    second = store.sync.bump_user("alice", T0, "b", T0 + HOUR)
    assert second.epoch == first.epoch + 1
    assert second.reason == "b"


def test_bump_never_goes_backwards_when_the_clock_does(store: Store) -> None:
    store.sync.issue("alice", T0, T0 + 900)
    ahead = store.sync.bump_user("alice", T0 + 100, None, T0 + HOUR)
    behind = store.sync.bump_user("alice", T0 + 50, None, T0 + HOUR)
    assert behind.epoch == ahead.epoch + 1
    assert store.sync.get_user("alice", T0 + 50) == behind


def test_bumps_are_strictly_monotonic(store: Store) -> None:
    epochs = [store.sync.bump_user("alice", T0 + (i % 3) * 1e-6, None, T0 + HOUR).epoch for i in range(30)]
    assert epochs == sorted(set(epochs))


def test_bump_of_an_unknown_user_creates_a_bumped_record(store: Store) -> None:
    record = store.sync.bump_user("carol", T0, "suspended", T0 + HOUR)
    assert record.epoch == clock_epoch(T0)
    assert record.bumped_at == T0
    assert record.reason == "suspended"
    assert store.sync.get_user("carol", T0 + HOUR - 1) == record


def test_bump_keeps_the_record_at_least_until_expires_at_and_never_shortens_it(store: Store) -> None:
    store.sync.issue("alice", T0, T0 + 10 * HOUR)
    store.sync.bump_user("alice", T0 + 1, None, T0 + HOUR)
    assert store.sync.get_user("alice", T0 + 9 * HOUR) is not None
    store.sync.bump_user("bob", T0, None, T0 + 20 * HOUR)
    assert store.sync.get_user("bob", T0 + 19 * HOUR) is not None


def test_bump_of_one_user_leaves_the_others_alone(store: Store) -> None:
    bob = store.sync.issue("bob", T0, T0 + 900)
    store.sync.issue("alice", T0, T0 + 900)
    store.sync.bump_user("alice", T0 + 1, None, T0 + HOUR)
    assert store.sync.issue("bob", T0 + 2, T0 + 900) == bob


def test_global_bump_is_monotonic_and_keeps_its_audit(store: Store) -> None:
    setup = store.sync.setup(T0)
    first = store.sync.bump_global(T0, "key rotation")
    assert first.epoch == setup.epoch + 1
    assert first.created_at == T0
    assert (first.bumped_at, first.reason) == (T0, "key rotation")
    later = store.sync.bump_global(T0 + 10, "incident")
    assert later.epoch == clock_epoch(T0 + 10)
    back = store.sync.bump_global(T0 + 5, None)
    assert back.epoch == later.epoch + 1
    assert back.expires_at is None
    assert store.sync.get_global(T0 + 5) == back


def test_global_bump_on_an_empty_store_creates_the_record(store: Store) -> None:
    record = store.sync.bump_global(T0, "first")
    assert record.epoch == clock_epoch(T0)
    assert store.sync.get_global(T0) == record


def test_global_bump_does_not_touch_user_records(store: Store) -> None:
    stamps = store.sync.issue("alice", T0, T0 + 900)
    store.sync.bump_global(T0 + 1, None)
    user = store.sync.get_user("alice", T0 + 1)
    assert user is not None
    assert user.epoch == stamps.user_epoch


# -- revoked ids ---------------------------------------------------------------------------


def test_revoked_token_lives_until_its_expiry_and_then_vanishes(store: Store) -> None:
    store.sync.issue("alice", T0, T0 + 900)
    store.sync.revoke_token("alice", "jti-1", T0 + 900, T0)
    assert store.sync.fetch("alice", "jti-1", None, T0).jti_revoked
    assert store.sync.fetch("alice", "jti-1", None, T0 + 899).jti_revoked
    assert not store.sync.fetch("alice", "jti-2", None, T0).jti_revoked
    assert not store.sync.fetch("alice", "jti-1", None, T0 + 900).jti_revoked
    assert not store.sync.fetch("alice", "jti-1", None, T0 + 5000).jti_revoked
    assert store.sync.stats(T0 + 900).revoked_tokens == 0


def test_a_revoked_jti_is_per_user(store: Store) -> None:
    store.sync.issue("alice", T0, T0 + 900)
    store.sync.issue("bob", T0, T0 + 900)
    store.sync.revoke_token("alice", "same", T0 + 900, T0)
    assert store.sync.fetch("alice", "same", None, T0 + 1).jti_revoked
    assert not store.sync.fetch("bob", "same", None, T0 + 1).jti_revoked
    assert store.sync.stats(T0 + 1).revoked_tokens == 1
    # Bob's own revocation of the same id is his, with its own expiry.
    store.sync.revoke_token("bob", "same", T0 + 100, T0)
    assert store.sync.fetch("bob", "same", None, T0 + 99).jti_revoked
    assert not store.sync.fetch("bob", "same", None, T0 + 100).jti_revoked
    assert store.sync.fetch("alice", "same", None, T0 + 100).jti_revoked
    tokens = {(e.uid, e.key): e.expires_at for e in store.sync.export_entries(T0 + 1) if e.kind == "token"}
    assert tokens == {("alice", "same"): T0 + 900, ("bob", "same"): T0 + 100}


@pytest.mark.anyio
async def test_a_revoked_jti_is_per_user_on_the_async_side(store: Store) -> None:
    await store.aio.revoke_token("alice", "same", T0 + 900, T0)
    assert (await store.aio.fetch("alice", "same", None, T0 + 1)).jti_revoked
    assert not (await store.aio.fetch("bob", "same", None, T0 + 1)).jti_revoked


def test_revoked_jtis_of_two_users_move_whole_between_stores(store: Store) -> None:
    store.sync.revoke_token("alice", "same", T0 + 900, T0)
    store.sync.revoke_token("bob", "same", T0 + 600, T0)
    reference = MemoryStore()
    assert reference.sync.import_entries(store.sync.export_entries(T0 + 1), T0 + 1) == 2
    for uid, until in (("alice", T0 + 900), ("bob", T0 + 600)):
        assert reference.sync.fetch(uid, "same", None, until - 1).jti_revoked
        assert not reference.sync.fetch(uid, "same", None, until).jti_revoked
    assert not reference.sync.fetch("carol", "same", None, T0 + 1).jti_revoked


def test_import_refuses_a_revoked_token_without_its_owner_and_imports_nothing(store: Store) -> None:
    entries = [
        SnapshotEntry("user", "alice", record=EpochRecord(epoch=5, created_at=T0, expires_at=T0 + HOUR)),
        SnapshotEntry("token", "owned", expires_at=T0 + 900, uid="alice"),
        SnapshotEntry("token", "ownerless", expires_at=T0 + 900),
    ]
    with pytest.raises(InvalidArgumentError, match="no owner"):
        store.sync.import_entries(entries, T0)
    assert store.sync.get_user("alice", T0) is None
    assert not store.sync.fetch("alice", "owned", None, T0).jti_revoked
    assert list(store.sync.export_entries(T0)) == []


def test_revoked_token_is_never_shortened_but_can_be_extended(store: Store) -> None:
    store.sync.revoke_token("alice", "jti-1", T0 + 900, T0)
    store.sync.revoke_token("alice", "jti-1", T0 + 10, T0)
    assert store.sync.fetch("alice", "jti-1", None, T0 + 800).jti_revoked
    store.sync.revoke_token("alice", "jti-1", T0 + 2000, T0)
    assert store.sync.fetch("alice", "jti-1", None, T0 + 1900).jti_revoked


def test_revoked_token_is_not_confused_with_a_session_of_the_same_id(store: Store) -> None:
    store.sync.revoke_token("alice", "same-id", T0 + 900, T0)
    state = store.sync.fetch("alice", "other", "same-id", T0)
    assert not state.session_revoked
    assert not state.jti_revoked


def test_revoked_session_lives_until_its_expiry_and_then_vanishes(store: Store) -> None:
    store.sync.revoke_session("sess-1", T0 + 600, T0)
    assert store.sync.fetch("alice", None, "sess-1", T0 + 599).session_revoked
    assert not store.sync.fetch("alice", None, "sess-2", T0).session_revoked
    assert not store.sync.fetch("alice", None, "sess-1", T0 + 600).session_revoked
    assert store.sync.stats(T0 + 600).revoked_sessions == 0


def test_revoked_session_is_never_shortened(store: Store) -> None:
    store.sync.revoke_session("sess-1", T0 + 600, T0)
    store.sync.revoke_session("sess-1", T0 + 1, T0)
    assert store.sync.fetch("alice", None, "sess-1", T0 + 500).session_revoked


def test_revocations_do_not_touch_epochs(store: Store) -> None:
    stamps = store.sync.issue("alice", T0, T0 + 900)
    store.sync.revoke_token("alice", "j", T0 + 900, T0)
    store.sync.revoke_session("s", T0 + 900, T0)
    assert store.sync.issue("alice", T0 + 1, T0 + 900) == stamps


# -- fetch ---------------------------------------------------------------------------------


def test_fetch_returns_all_four_parts_in_one_call(store: Store) -> None:
    stamps = store.sync.issue("alice", T0, T0 + 900)
    store.sync.revoke_token("alice", "j1", T0 + 900, T0)
    store.sync.revoke_session("s1", T0 + 900, T0)
    state = store.sync.fetch("alice", "j1", "s1", T0 + 1)
    assert state.user is not None
    assert state.user.epoch == stamps.user_epoch
    assert state.global_ is not None
    assert state.global_.epoch == stamps.global_epoch
    assert state.jti_revoked
    assert state.session_revoked


def test_fetch_of_nothing_known(store: Store) -> None:
    state = store.sync.fetch("nobody", "j", "s", T0)
    assert state.user is None
    assert state.global_ is None
    assert not state.jti_revoked
    assert not state.session_revoked


def test_fetch_does_not_write(store: Store) -> None:
    store.sync.fetch("ghost", "j", "s", T0)
    assert store.sync.get_user("ghost", T0) is None
    assert store.sync.get_global(T0) is None
    assert store.sync.stats(T0).users == 0


def test_expired_user_record_counts_as_missing(store: Store) -> None:
    first = store.sync.issue("alice", T0, T0 + 100)
    user = store.sync.get_user("alice", T0)
    assert user is not None
    assert user.expires_at is not None
    gone = user.expires_at
    assert store.sync.fetch("alice", None, None, gone).user is None
    assert store.sync.get_user("alice", gone + 1) is None
    # a record recreated after expiry starts from the clock, not from the forgotten value
    again = store.sync.issue("alice", gone + 1, gone + 1000)
    assert again.user_epoch >= clock_epoch(gone + 1)
    assert again.user_epoch != first.user_epoch
    recreated = store.sync.get_user("alice", gone + 1)
    assert recreated is not None
    assert (recreated.created_at, recreated.bumped_at, recreated.reason) == (gone + 1, None, None)


def test_bump_of_an_expired_record_still_moves_forward(store: Store) -> None:
    first = store.sync.issue("alice", T0, T0 + 100)
    user = store.sync.get_user("alice", T0)
    assert user is not None
    assert user.expires_at is not None
    later = user.expires_at + 10
    record = store.sync.bump_user("alice", later, "late", later + HOUR)
    assert record.epoch >= clock_epoch(later)
    assert record.epoch > first.user_epoch


def test_user_ids_are_exact(store: Store) -> None:
    store.sync.issue("alice", T0, T0 + 900)
    for other in ("Alice", "alice ", "", "alic", "u:alice", "g"):
        assert store.sync.get_user(other, T0) is None
    odd = "ünïcødé/'\"; DROP TABLE epochs;--"
    stamps = store.sync.issue(odd, T0, T0 + 900)
    user = store.sync.get_user(odd, T0)
    assert user is not None
    assert user.epoch == stamps.user_epoch


# -- stats, wipe ---------------------------------------------------------------------------


def test_stats_counts_only_live_entries(store: Store) -> None:
    assert store.sync.stats(T0) == replace(store.sync.stats(T0), users=0, revoked_tokens=0, revoked_sessions=0)
    store.sync.issue("short", T0, T0 + 100)
    store.sync.issue("long", T0, T0 + 100 * HOUR)
    store.sync.revoke_token("long", "j-short", T0 + 100, T0)
    store.sync.revoke_token("long", "j-long", T0 + 100 * HOUR, T0)
    store.sync.revoke_session("s-short", T0 + 100, T0)
    store.sync.revoke_session("s-long", T0 + 100 * HOUR, T0)
    now = store.sync.stats(T0)
    assert (now.users, now.revoked_tokens, now.revoked_sessions) == (2, 2, 2)
    assert now.kind == store.sync.kind
    user = store.sync.get_user("short", T0)
    assert user is not None
    assert user.expires_at is not None
    later = store.sync.stats(max(user.expires_at, T0 + 100) + 1)
    assert (later.users, later.revoked_tokens, later.revoked_sessions) == (1, 1, 1)


def test_wipe_forgets_everything(store: Store) -> None:
    store.sync.setup(T0)
    store.sync.issue("alice", T0, T0 + 900)
    store.sync.bump_user("bob", T0, None, T0 + HOUR)
    store.sync.revoke_token("alice", "j", T0 + 900, T0)
    store.sync.revoke_session("s", T0 + 900, T0)
    store.sync.wipe()
    state = store.sync.fetch("alice", "j", "s", T0 + 1)
    assert state.user is None
    assert state.global_ is None
    assert not state.jti_revoked
    assert not state.session_revoked
    assert store.sync.get_user("bob", T0 + 1) is None
    stats = store.sync.stats(T0 + 1)
    assert (stats.users, stats.revoked_tokens, stats.revoked_sessions) == (0, 0, 0)
    assert list(store.sync.export_entries(T0 + 1)) == []


def test_epochs_never_repeat_after_a_wipe(store: Store) -> None:
    issued = {store.sync.issue("alice", T0, T0 + 900).user_epoch, store.sync.setup(T0).epoch}
    for _ in range(5):
        issued.add(store.sync.bump_user("alice", T0, None, T0 + HOUR).epoch)
        issued.add(store.sync.bump_global(T0, None).epoch)
    store.sync.wipe()
    # the clock has moved on by a second: a recreated record starts there, beyond every old value
    stamps = store.sync.issue("alice", T0 + 1, T0 + 900)
    assert stamps.user_epoch == clock_epoch(T0 + 1)
    assert stamps.global_epoch == clock_epoch(T0 + 1)
    assert stamps.user_epoch not in issued
    assert stamps.global_epoch not in issued
    assert stamps.user_epoch > max(issued)


# -- export / import -----------------------------------------------------------------------


def populate(store: Store) -> None:
    store.sync.setup(T0)
    store.sync.issue("alice", T0, T0 + 900)
    store.sync.bump_user("bob", T0 + 1, "password_change", T0 + HOUR)
    store.sync.bump_global(T0 + 2, "rotation")
    store.sync.revoke_token("alice", "j1", T0 + 900, T0)
    store.sync.revoke_session("s1", T0 + 600, T0)
    store.sync.revoke_token("alice", "gone", T0 + 1, T0)
    # A live session of alice that has rotated once: its generation, previous one and rotation time.
    first = store.sync.issue("alice", T0, T0 + 900, "live").session_generation
    assert first is not None
    store.sync.rotate_session("live", "alice", first, T0 + 3, 5.0, T0 + 900)


def snapshot(store: Store, now: float) -> dict[tuple[str, str], SnapshotEntry]:
    return {(e.kind, e.key): e for e in store.sync.export_entries(now)}


def test_export_lists_every_live_entry(store: Store) -> None:
    populate(store)
    entries = snapshot(store, T0 + 10)
    assert set(entries) == {
        ("global", ""),
        ("user", "alice"),
        ("user", "bob"),
        ("token", "j1"),
        ("session", "s1"),
        ("session", "live"),
    }
    bob = entries[("user", "bob")].record
    assert bob is not None
    assert bob.reason == "password_change"
    assert entries[("token", "j1")].uid == "alice"
    assert entries[("token", "j1")].expires_at == T0 + 900
    assert entries[("session", "s1")].expires_at == T0 + 600
    revoked, live = entries[("session", "s1")].session, entries[("session", "live")].session
    assert revoked is not None
    assert revoked.revoked
    assert live == store.sync.get_session("live", T0 + 10)
    assert live is not None
    assert (live.uid, live.revoked, live.rotated_at) == ("alice", False, T0 + 3)
    assert live.previous == live.first_generation < live.generation


def test_export_import_round_trips_through_another_store(store: Store) -> None:
    populate(store)
    reference = MemoryStore()
    count = reference.sync.import_entries(store.sync.export_entries(T0 + 10), T0 + 10)
    assert count == 6
    assert snapshot(reference, T0 + 10) == snapshot(store, T0 + 10)
    for uid, jti, sid in [("alice", "j1", "s1"), ("alice", None, "live"), ("bob", "x", "y"), ("carol", None, None)]:
        assert reference.sync.fetch(uid, jti, sid, T0 + 10) == store.sync.fetch(uid, jti, sid, T0 + 10)
    # And back: the store itself takes its own export without a change.
    assert store.sync.import_entries(reference.sync.export_entries(T0 + 10), T0 + 10) == 6
    assert snapshot(store, T0 + 10) == snapshot(reference, T0 + 10)


def test_import_into_an_empty_store_reproduces_the_state(store: Store) -> None:
    source = MemoryStore()
    populate(source)
    # Asked first, so that a store with a local cache has cached the absence the import must end.
    assert store.sync.fetch("alice", None, "live", T0 + 10).session is None
    assert store.sync.import_entries(source.sync.export_entries(T0 + 10), T0 + 10) == 6
    assert snapshot(store, T0 + 10) == snapshot(source, T0 + 10)
    for sid in ("s1", "live"):
        assert store.sync.fetch("alice", "j1", sid, T0 + 10) == source.sync.fetch("alice", "j1", sid, T0 + 10)


def test_import_never_moves_an_epoch_backwards(store: Store) -> None:
    store.sync.issue("alice", T0, T0 + 900)
    current = store.sync.bump_user("alice", T0 + 100, "newer", T0 + HOUR)
    global_ = store.sync.bump_global(T0 + 100, "newer")
    stale = [
        SnapshotEntry("user", "alice", record=EpochRecord(epoch=current.epoch - 5, created_at=T0, bumped_at=T0)),
        SnapshotEntry("global", "", record=EpochRecord(epoch=global_.epoch - 5, created_at=T0)),
    ]
    store.sync.import_entries(stale, T0 + 200)
    user = store.sync.get_user("alice", T0 + 200)
    assert user is not None
    assert (user.epoch, user.reason) == (current.epoch, "newer")
    after = store.sync.get_global(T0 + 200)
    assert after is not None
    assert after.epoch == global_.epoch
    ahead = EpochRecord(epoch=current.epoch + 7, created_at=T0, bumped_at=T0 + 150, reason="imported")
    store.sync.import_entries([SnapshotEntry("user", "alice", record=ahead)], T0 + 200)
    user = store.sync.get_user("alice", T0 + 200)
    assert user is not None
    assert (user.epoch, user.reason) == (ahead.epoch, "imported")


def test_import_never_shortens_a_revocation(store: Store) -> None:
    store.sync.revoke_token("alice", "j", T0 + 900, T0)
    store.sync.revoke_session("s", T0 + 900, T0)
    store.sync.import_entries(
        [
            SnapshotEntry("token", "j", expires_at=T0 + 5, uid="alice"),
            SnapshotEntry("session", "s", expires_at=T0 + 5),
        ],
        T0,
    )
    state = store.sync.fetch("alice", "j", "s", T0 + 800)
    assert state.jti_revoked
    assert state.session_revoked


def session_entry(sid: str, record: SessionRecord) -> SnapshotEntry:
    return SnapshotEntry("session", sid, expires_at=record.expires_at, session=record)


def test_import_never_moves_a_session_back_nor_un_revokes_it(store: Store) -> None:
    g0 = store.sync.issue("alice", T0, T0 + 900, "s").session_generation
    assert g0 is not None
    stale = store.sync.get_session("s", T0)
    assert stale is not None
    g1 = store.sync.rotate_session("s", "alice", g0, T0 + 10, 5.0, T0 + 900).session
    assert g1 is not None
    store.sync.revoke_session("dead", T0 + 900, T0)
    dead = store.sync.get_session("dead", T0)
    assert dead is not None
    assert store.sync.fetch("alice", None, "dead", T0 + 20).session_revoked
    # An old backup: "s" before its rotation, "dead" before its revocation, both expiring sooner.
    before_revocation = replace(dead, revoked=False, expires_at=T0 + 100)
    count = store.sync.import_entries(
        [session_entry("s", replace(stale, expires_at=T0 + 100)), session_entry("dead", before_revocation)], T0 + 20
    )
    assert count == 2
    assert store.sync.get_session("s", T0 + 20) == g1
    assert store.sync.get_session("dead", T0 + 20) == dead
    state = store.sync.fetch("alice", None, "dead", T0 + 20)
    assert state.session_revoked
    assert state.session == dead


def test_import_moves_a_session_forward_and_keeps_it_revoked(store: Store) -> None:
    g0 = store.sync.issue("alice", T0, T0 + 900, "s").session_generation
    assert g0 is not None
    store.sync.revoke_session("s", T0 + 600, T0 + 1)
    here = store.sync.get_session("s", T0 + 1)
    assert here is not None
    # The other store saw two more rotations and keeps the session longer, and does not know of the revocation.
    ahead = SessionRecord(
        generation=g0 + 2_000_000,
        first_generation=g0,
        created_at=T0,
        expires_at=T0 + 2 * HOUR,
        uid="alice",
        rotated_at=T0 + 2,
        previous=g0 + 1_000_000,
    )
    assert store.sync.fetch("alice", None, "s", T0 + 3).session_revoked
    assert store.sync.import_entries([session_entry("s", ahead)], T0 + 3) == 1
    merged = store.sync.get_session("s", T0 + 3)
    assert merged == replace(ahead, revoked=True)
    assert store.sync.fetch("alice", None, "s", T0 + HOUR).session_revoked
    # The generation only moves forward: the same import again, or an older one, changes nothing.
    store.sync.import_entries([session_entry("s", ahead), session_entry("s", here)], T0 + 3)
    assert store.sync.get_session("s", T0 + 3) == merged


def test_import_of_a_session_the_store_lost_brings_it_back(store: Store) -> None:
    g0 = store.sync.issue("alice", T0, T0 + 900, "s").session_generation
    assert g0 is not None
    exported = [entry for entry in store.sync.export_entries(T0 + 1) if entry.kind == "session"]
    original = store.sync.get_session("s", T0 + 1)
    store.sync.wipe()
    assert store.sync.fetch("alice", None, "s", T0 + 1).session is None
    assert store.sync.import_entries(exported, T0 + 1) == 1
    assert store.sync.fetch("alice", None, "s", T0 + 1).session == original
    # A mint for the session after the import keeps its generation (no fresh record, no lost state).
    assert store.sync.issue("alice", T0 + 2, T0 + 900, "s").session_generation == g0


def test_import_skips_expired_session_records(store: Store) -> None:
    expired = SessionRecord(generation=5, first_generation=5, created_at=T0, expires_at=T0 + 1, uid="alice")
    assert store.sync.import_entries([session_entry("old", expired)], T0 + 2) == 0
    assert store.sync.get_session("old", T0 + 2) is None
    assert store.sync.stats(T0 + 2).sessions in (0, None)


def test_import_skips_entries_without_their_payload(store: Store) -> None:
    count = store.sync.import_entries(
        [SnapshotEntry("user", "alice"), SnapshotEntry("token", "j", uid="alice"), SnapshotEntry("bogus", "x")], T0
    )
    assert count == 0
    assert store.sync.get_user("alice", T0) is None


# -- the async side ------------------------------------------------------------------------


def test_async_side_shares_the_data_of_the_sync_side(store: Store) -> None:
    async def scenario() -> None:
        aio = store.aio
        await aio.setup(T0)
        stamps = await aio.issue("alice", T0, T0 + 900)
        assert store.sync.issue("alice", T0, T0 + 900) == stamps
        bumped = await aio.bump_user("alice", T0 + 1, "r", T0 + HOUR)
        assert store.sync.get_user("alice", T0 + 1) == bumped
        assert await aio.get_user("alice", T0 + 1) == bumped
        g = await aio.bump_global(T0 + 1, None)
        assert await aio.get_global(T0 + 1) == g
        await aio.revoke_token("alice", "j", T0 + 900, T0)
        await aio.revoke_session("s", T0 + 900, T0)
        state = await aio.fetch("alice", "j", "s", T0 + 2)
        assert state == store.sync.fetch("alice", "j", "s", T0 + 2)
        assert state.jti_revoked
        assert state.session_revoked
        await aio.close()

    asyncio.run(scenario())


@pytest.mark.parametrize("name", ["stats", "export_entries", "import_entries", "wipe"])
def test_administration_is_on_the_blocking_side_only(store: Store, name: str) -> None:
    # The async side is the request path; administration (scans, snapshots) runs blocking, in
    # the CLI or in a worker thread, so it is written and tested once.
    assert callable(getattr(store.sync, name))
    assert not hasattr(store.aio, name)


@pytest.mark.parametrize("uid", ["alice", "bob"])
def test_a_fresh_store_is_empty(store: Store, uid: str) -> None:
    # every test gets a new store: nothing leaks from one to the next
    assert store.sync.get_user(uid, T0) is None
    assert store.sync.get_global(T0) is None
    store.sync.issue(uid, T0, T0 + 900)

"""The store contract for session records, on every backend (memory, SQLite, Redis, Redis Cluster).

A session record holds a generation, an expiry and a revoked flag: ``issue`` creates and extends
it, ``rotate_session`` moves it (or revokes it on reuse) atomically, ``revoke_session`` marks it,
``fetch`` returns it with the rest of a check in one store call.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import pytest

from authx_epoch.records import RECORD_SLACK, RotationStatus, clock_epoch
from authx_epoch.stores import Store

T0 = 1_700_000_000.0
HOUR = 3600.0


def test_issue_with_a_session_creates_its_record_with_a_clock_generation(store: Store) -> None:
    stamps = store.sync.issue("alice", T0, T0 + 900, "s1")
    assert stamps.session_generation == clock_epoch(T0)
    record = store.sync.get_session("s1", T0)
    assert record is not None
    assert (record.generation, record.first_generation, record.uid, record.revoked) == (
        clock_epoch(T0),
        clock_epoch(T0),
        "alice",
        False,
    )
    assert record.expires_at >= T0 + 900
    # Without a session id nothing about sessions is written or stamped.
    assert store.sync.issue("alice", T0, T0 + 900).session_generation is None
    assert store.sync.stats(T0).sessions == 1


def test_issue_keeps_the_generation_and_extends_never_shortens(store: Store) -> None:
    first = store.sync.issue("alice", T0, T0 + 900, "s1")
    again = store.sync.issue("alice", T0 + 60, T0 + 60 + 900, "s1")
    assert again.session_generation == first.session_generation
    store.sync.issue("alice", T0 + 60, T0 + 5 * HOUR, "s1")
    record = store.sync.get_session("s1", T0 + 60)
    assert record is not None
    assert record.expires_at >= T0 + 5 * HOUR
    store.sync.issue("alice", T0 + 61, T0 + 100, "s1")
    record = store.sync.get_session("s1", T0 + 61)
    assert record is not None
    assert record.expires_at >= T0 + 5 * HOUR


def test_fetch_returns_the_session_record_in_the_same_call(store: Store) -> None:
    store.sync.issue("alice", T0, T0 + 900, "s1")
    state = store.sync.fetch("alice", "j1", "s1", T0 + 1)
    assert state.user is not None
    assert state.global_ is not None
    assert state.session is not None
    assert state.session.generation == clock_epoch(T0)
    assert not state.session_revoked
    assert not state.jti_revoked
    assert store.sync.fetch("alice", "j1", "other", T0 + 1).session is None
    assert store.sync.fetch("alice", "j1", None, T0 + 1).session is None


@pytest.mark.anyio
async def test_the_async_side_sees_the_same_sessions(store: Store) -> None:
    stamps = await store.aio.issue("alice", T0, T0 + 900, "s1")
    assert stamps.session_generation == clock_epoch(T0)
    outcome = await store.aio.rotate_session("s1", clock_epoch(T0), T0 + 1, 5.0, T0 + 900)
    assert outcome.status is RotationStatus.ROTATED
    assert (await store.aio.get_session("s1", T0 + 1)) == store.sync.get_session("s1", T0 + 1)
    assert (await store.aio.fetch("alice", None, "s1", T0 + 1)).session == outcome.session


def test_revoke_session_marks_the_record_and_keeps_it_at_least_as_long(store: Store) -> None:
    store.sync.issue("alice", T0, T0 + 2 * HOUR, "s1")
    store.sync.revoke_session("s1", T0 + 60, T0)
    state = store.sync.fetch("alice", None, "s1", T0 + 1)
    assert state.session_revoked
    assert state.session is not None
    assert state.session.revoked
    # The record outlives the short revocation expiry: it was minted for two hours.
    assert store.sync.fetch("alice", None, "s1", T0 + HOUR).session_revoked
    assert store.sync.stats(T0 + 1).revoked_sessions == 1
    # A later mint for a revoked session never brings it back.
    store.sync.issue("alice", T0 + 2, T0 + 3 * HOUR, "s1")
    assert store.sync.fetch("alice", None, "s1", T0 + 2).session_revoked


def test_revoking_an_unknown_session_creates_a_revoked_record(store: Store) -> None:
    store.sync.revoke_session("ghost", T0 + 600, T0)
    state = store.sync.fetch("alice", None, "ghost", T0 + 1)
    assert state.session_revoked
    assert state.session is not None
    assert state.session.revoked
    assert not store.sync.fetch("alice", None, "ghost", T0 + 600).session_revoked
    # An entry that would already be over is not kept at all.
    store.sync.revoke_session("past", T0 - 1, T0)
    assert store.sync.get_session("past", T0) is None


def test_rotation_moves_the_generation_forward_and_remembers_the_previous(store: Store) -> None:
    g0 = store.sync.issue("alice", T0, T0 + 900, "s1").session_generation
    assert g0 is not None
    outcome = store.sync.rotate_session("s1", g0, T0 + 10, 5.0, T0 + 10 + 900)
    assert outcome.status is RotationStatus.ROTATED
    assert outcome.session is not None
    g1 = outcome.session.generation
    assert g1 == max(g0 + 1, clock_epoch(T0 + 10))
    assert (outcome.session.previous, outcome.session.rotated_at) == (g0, T0 + 10)
    assert outcome.session.expires_at >= T0 + 10 + 900
    # The next mint of the session stamps the new generation.
    assert store.sync.issue("alice", T0 + 10, T0 + 900, "s1").session_generation == g1
    second = store.sync.rotate_session("s1", g1, T0 + 20, 5.0, T0 + 900)
    assert second.status is RotationStatus.ROTATED
    assert second.session is not None
    assert second.session.generation > g1


def test_the_previous_generation_within_the_grace_is_answered_without_a_move(store: Store) -> None:
    g0 = store.sync.issue("alice", T0, T0 + 900, "s1").session_generation
    assert g0 is not None
    rotated = store.sync.rotate_session("s1", g0, T0 + 10, 5.0, T0 + 900)
    assert rotated.session is not None
    grace = store.sync.rotate_session("s1", g0, T0 + 15, 5.0, T0 + 900)
    assert grace.status is RotationStatus.GRACE
    assert grace.session == rotated.session
    assert store.sync.get_session("s1", T0 + 15) == rotated.session


@pytest.mark.parametrize("late", [5.001, 60.0])
def test_the_previous_generation_after_the_grace_is_a_reuse_that_revokes(store: Store, late: float) -> None:
    g0 = store.sync.issue("alice", T0, T0 + 900, "s1").session_generation
    assert g0 is not None
    store.sync.rotate_session("s1", g0, T0 + 10, 5.0, T0 + 900)
    reused = store.sync.rotate_session("s1", g0, T0 + 10 + late, 5.0, T0 + 900)
    assert reused.status is RotationStatus.REUSED
    assert reused.session is not None
    assert reused.session.revoked
    assert store.sync.fetch("alice", None, "s1", T0 + 11 + late).session_revoked
    # After that, even the current generation is refused: the session is over.
    assert reused.session is not None
    after = store.sync.rotate_session("s1", reused.session.generation, T0 + 12 + late, 5.0, T0 + 900)
    assert after.status is RotationStatus.REVOKED


def test_an_older_generation_is_a_reuse_even_within_the_grace(store: Store) -> None:
    g0 = store.sync.issue("alice", T0, T0 + 900, "s1").session_generation
    assert g0 is not None
    first = store.sync.rotate_session("s1", g0, T0 + 10, 5.0, T0 + 900)
    assert first.session is not None
    store.sync.rotate_session("s1", first.session.generation, T0 + 11, 5.0, T0 + 900)
    assert store.sync.rotate_session("s1", g0, T0 + 12, 5.0, T0 + 900).status is RotationStatus.REUSED


def test_missing_revoked_and_foreign_generations_change_nothing(store: Store) -> None:
    assert store.sync.rotate_session("nope", 1, T0, 5.0, T0 + 900).status is RotationStatus.MISSING
    assert store.sync.get_session("nope", T0) is None
    g0 = store.sync.issue("alice", T0, T0 + 900, "s1").session_generation
    assert g0 is not None
    # A generation from the future or from before the record existed can only come from lost state.
    for foreign in (g0 + 1, g0 - 1):
        assert store.sync.rotate_session("s1", foreign, T0 + 1, 5.0, T0 + 900).status is RotationStatus.MISSING
    record = store.sync.get_session("s1", T0 + 1)
    assert record is not None
    assert record.generation == g0
    assert not record.revoked
    store.sync.revoke_session("s1", T0 + 900, T0 + 2)
    assert store.sync.rotate_session("s1", g0, T0 + 3, 5.0, T0 + 900).status is RotationStatus.REVOKED


def test_session_records_expire_with_the_session_and_storage_stays_per_session(store: Store) -> None:
    for i in range(5):
        stamps = store.sync.issue("alice", T0, T0 + 900, f"s{i}")
        assert stamps.session_generation is not None
        for step in range(3):  # rotations add nothing: one record per session
            rotated = store.sync.rotate_session(f"s{i}", stamps.session_generation, T0 + step + 1, 0.0, T0 + 900)
            assert rotated.session is not None
            stamps = store.sync.issue("alice", T0 + step + 1, T0 + 900, f"s{i}")
    assert store.sync.stats(T0 + 10).sessions == 5
    gone = T0 + 900 + RECORD_SLACK + 1
    assert store.sync.stats(gone).sessions == 0
    assert store.sync.get_session("s0", gone) is None
    assert store.sync.fetch("alice", None, "s0", gone).session is None
    # An expired session id used again starts a new record, never reusing a generation.
    fresh = store.sync.issue("alice", gone, gone + 900, "s0")
    assert fresh.session_generation is not None
    assert fresh.session_generation >= clock_epoch(gone)


def test_a_wipe_loses_session_records(store: Store) -> None:
    store.sync.issue("alice", T0, T0 + 900, "s1")
    store.sync.revoke_session("s2", T0 + 900, T0)
    store.sync.wipe()
    assert store.sync.fetch("alice", None, "s1", T0 + 1).session is None
    assert store.sync.get_session("s2", T0 + 1) is None


def test_live_and_revoked_sessions_survive_export_and_import(store: Store) -> None:
    store.sync.setup(T0)
    store.sync.issue("alice", T0, T0 + 900, "live")
    store.sync.issue("alice", T0, T0 + 900, "dead")
    store.sync.revoke_session("dead", T0 + 600, T0)
    entries = list(store.sync.export_entries(T0 + 1))
    sessions = {entry.key: entry for entry in entries if entry.kind == "session"}
    assert set(sessions) == {"live", "dead"}
    assert sessions["dead"].expires_at is not None
    assert sessions["dead"].expires_at >= T0 + 600
    before = {sid: store.sync.get_session(sid, T0 + 2) for sid in sessions}
    store.sync.wipe()
    store.sync.import_entries(entries, T0 + 1)
    assert store.sync.fetch("alice", None, "dead", T0 + 2).session_revoked
    assert not store.sync.fetch("alice", None, "live", T0 + 2).session_revoked
    assert {sid: store.sync.get_session(sid, T0 + 2) for sid in sessions} == before


def test_concurrent_rotations_of_one_generation_rotate_exactly_once(store: Store) -> None:
    g0 = store.sync.issue("alice", T0, T0 + 900, "s1").session_generation
    assert g0 is not None
    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = list(pool.map(lambda _: store.sync.rotate_session("s1", g0, T0 + 1, 5.0, T0 + 900), range(16)))
    statuses = [outcome.status for outcome in outcomes]
    assert statuses.count(RotationStatus.ROTATED) == 1
    assert statuses.count(RotationStatus.GRACE) == 15


@pytest.mark.anyio
async def test_concurrent_async_rotations_of_one_generation_rotate_exactly_once(store: Store) -> None:
    g0 = (await store.aio.issue("alice", T0, T0 + 900, "s1")).session_generation
    assert g0 is not None
    outcomes = await asyncio.gather(*(store.aio.rotate_session("s1", g0, T0 + 1, 5.0, T0 + 900) for _ in range(8)))
    statuses = sorted(outcome.status.value for outcome in outcomes)
    assert statuses == ["grace"] * 7 + ["rotated"]

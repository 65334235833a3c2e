"""The store contract for session records, on every backend (memory, SQLite, Redis, Redis Cluster).

A session record holds a generation, an expiry and a revoked flag: ``issue`` creates and extends
it, ``rotate_session`` moves it (or revokes it on reuse) atomically, ``revoke_session`` marks it,
``fetch`` returns it with the rest of a check in one store call.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import pytest

from authx_epoch import SessionOwnerError
from authx_epoch.records import RECORD_SLACK, RotationStatus, SessionRecord, SnapshotEntry, clock_epoch
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
    outcome = await store.aio.rotate_session("s1", "alice", clock_epoch(T0), T0 + 1, 5.0, T0 + 900)
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
    outcome = store.sync.rotate_session("s1", "alice", g0, T0 + 10, 5.0, T0 + 10 + 900)
    assert outcome.status is RotationStatus.ROTATED
    assert outcome.session is not None
    g1 = outcome.session.generation
    assert g1 == max(g0 + 1, clock_epoch(T0 + 10))
    assert (outcome.session.previous, outcome.session.rotated_at) == (g0, T0 + 10)
    assert outcome.session.expires_at >= T0 + 10 + 900
    # The next mint of the session stamps the new generation.
    assert store.sync.issue("alice", T0 + 10, T0 + 900, "s1").session_generation == g1
    second = store.sync.rotate_session("s1", "alice", g1, T0 + 20, 5.0, T0 + 900)
    assert second.status is RotationStatus.ROTATED
    assert second.session is not None
    assert second.session.generation > g1


def test_the_previous_generation_within_the_grace_is_answered_once_without_a_move(store: Store) -> None:
    g0 = store.sync.issue("alice", T0, T0 + 900, "s1").session_generation
    assert g0 is not None
    rotated = store.sync.rotate_session("s1", "alice", g0, T0 + 10, 5.0, T0 + 900)
    assert rotated.session is not None
    assert not rotated.session.grace_used
    grace = store.sync.rotate_session("s1", "alice", g0, T0 + 15, 5.0, T0 + 900)
    assert grace.status is RotationStatus.GRACE
    # Nothing moves, but the record remembers that the grace is used up.
    assert grace.session == replace(rotated.session, grace_used=True)
    assert store.sync.get_session("s1", T0 + 15) == grace.session
    assert not store.sync.fetch("alice", None, "s1", T0 + 15).session_revoked


def test_a_second_replay_within_the_grace_is_a_reuse_that_revokes(store: Store) -> None:
    g0 = store.sync.issue("alice", T0, T0 + 900, "s1").session_generation
    assert g0 is not None
    rotated = store.sync.rotate_session("s1", "alice", g0, T0 + 10, 5.0, T0 + 900)
    assert rotated.session is not None
    assert store.sync.rotate_session("s1", "alice", g0, T0 + 11, 5.0, T0 + 900).status is RotationStatus.GRACE
    again = store.sync.rotate_session("s1", "alice", g0, T0 + 12, 5.0, T0 + 900)
    assert again.status is RotationStatus.REUSED
    assert again.session is not None
    assert again.session.revoked
    assert store.sync.fetch("alice", None, "s1", T0 + 12).session_revoked
    # The current generation is refused too: the session is over.
    current = store.sync.rotate_session("s1", "alice", rotated.session.generation, T0 + 13, 5.0, T0 + 900)
    assert current.status is RotationStatus.REVOKED


def test_a_new_rotation_makes_the_grace_available_again(store: Store) -> None:
    g0 = store.sync.issue("alice", T0, T0 + 900, "s1").session_generation
    assert g0 is not None
    first = store.sync.rotate_session("s1", "alice", g0, T0 + 10, 5.0, T0 + 900).session
    assert first is not None
    assert store.sync.rotate_session("s1", "alice", g0, T0 + 11, 5.0, T0 + 900).status is RotationStatus.GRACE
    second = store.sync.rotate_session("s1", "alice", first.generation, T0 + 20, 5.0, T0 + 900)
    assert second.status is RotationStatus.ROTATED
    assert second.session is not None
    assert not second.session.grace_used
    grace = store.sync.rotate_session("s1", "alice", first.generation, T0 + 21, 5.0, T0 + 900)
    assert grace.status is RotationStatus.GRACE
    assert store.sync.rotate_session("s1", "alice", first.generation, T0 + 22, 5.0, T0 + 900).status is (
        RotationStatus.REUSED
    )


@pytest.mark.anyio
async def test_the_async_side_answers_the_grace_once(store: Store) -> None:
    g0 = (await store.aio.issue("alice", T0, T0 + 900, "s1")).session_generation
    assert g0 is not None
    assert (await store.aio.rotate_session("s1", "alice", g0, T0 + 1, 5.0, T0 + 900)).status is RotationStatus.ROTATED
    assert (await store.aio.rotate_session("s1", "alice", g0, T0 + 2, 5.0, T0 + 900)).status is RotationStatus.GRACE
    assert (await store.aio.rotate_session("s1", "alice", g0, T0 + 3, 5.0, T0 + 900)).status is RotationStatus.REUSED
    assert (await store.aio.fetch("alice", None, "s1", T0 + 3)).session_revoked


@pytest.mark.parametrize("late", [5.001, 60.0])
def test_the_previous_generation_after_the_grace_is_a_reuse_that_revokes(store: Store, late: float) -> None:
    g0 = store.sync.issue("alice", T0, T0 + 900, "s1").session_generation
    assert g0 is not None
    store.sync.rotate_session("s1", "alice", g0, T0 + 10, 5.0, T0 + 900)
    reused = store.sync.rotate_session("s1", "alice", g0, T0 + 10 + late, 5.0, T0 + 900)
    assert reused.status is RotationStatus.REUSED
    assert reused.session is not None
    assert reused.session.revoked
    assert store.sync.fetch("alice", None, "s1", T0 + 11 + late).session_revoked
    # After that, even the current generation is refused: the session is over.
    assert reused.session is not None
    after = store.sync.rotate_session("s1", "alice", reused.session.generation, T0 + 12 + late, 5.0, T0 + 900)
    assert after.status is RotationStatus.REVOKED


def test_an_older_generation_is_a_reuse_even_within_the_grace(store: Store) -> None:
    g0 = store.sync.issue("alice", T0, T0 + 900, "s1").session_generation
    assert g0 is not None
    first = store.sync.rotate_session("s1", "alice", g0, T0 + 10, 5.0, T0 + 900)
    assert first.session is not None
    store.sync.rotate_session("s1", "alice", first.session.generation, T0 + 11, 5.0, T0 + 900)
    assert store.sync.rotate_session("s1", "alice", g0, T0 + 12, 5.0, T0 + 900).status is RotationStatus.REUSED


def test_missing_revoked_and_foreign_generations_change_nothing(store: Store) -> None:
    assert store.sync.rotate_session("nope", "alice", 1, T0, 5.0, T0 + 900).status is RotationStatus.MISSING
    assert store.sync.get_session("nope", T0) is None
    g0 = store.sync.issue("alice", T0, T0 + 900, "s1").session_generation
    assert g0 is not None
    # A generation from the future or from before the record existed can only come from lost state.
    for foreign in (g0 + 1, g0 - 1):
        assert store.sync.rotate_session("s1", "alice", foreign, T0 + 1, 5.0, T0 + 900).status is RotationStatus.MISSING
    record = store.sync.get_session("s1", T0 + 1)
    assert record is not None
    assert record.generation == g0
    assert not record.revoked
    store.sync.revoke_session("s1", T0 + 900, T0 + 2)
    assert store.sync.rotate_session("s1", "alice", g0, T0 + 3, 5.0, T0 + 900).status is RotationStatus.REVOKED


def test_session_records_expire_with_the_session_and_storage_stays_per_session(store: Store) -> None:
    for i in range(5):
        stamps = store.sync.issue("alice", T0, T0 + 900, f"s{i}")
        assert stamps.session_generation is not None
        for step in range(3):  # rotations add nothing: one record per session
            generation = stamps.session_generation
            rotated = store.sync.rotate_session(f"s{i}", "alice", generation, T0 + step + 1, 0.0, T0 + 900)
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
        outcomes = list(
            pool.map(lambda _: store.sync.rotate_session("s1", "alice", g0, T0 + 1, 5.0, T0 + 900), range(16))
        )
    statuses = [outcome.status for outcome in outcomes]
    # One rotation, one grace answer, and every other caller is a reuse: the session ends revoked.
    assert statuses.count(RotationStatus.ROTATED) == 1
    assert statuses.count(RotationStatus.GRACE) == 1
    assert statuses.count(RotationStatus.REUSED) + statuses.count(RotationStatus.REVOKED) == 14
    assert statuses.count(RotationStatus.REUSED) >= 1
    assert store.sync.fetch("alice", None, "s1", T0 + 1).session_revoked


@pytest.mark.anyio
async def test_concurrent_async_rotations_of_one_generation_rotate_exactly_once(store: Store) -> None:
    g0 = (await store.aio.issue("alice", T0, T0 + 900, "s1")).session_generation
    assert g0 is not None
    outcomes = await asyncio.gather(
        *(store.aio.rotate_session("s1", "alice", g0, T0 + 1, 5.0, T0 + 900) for _ in range(8))
    )
    statuses = [outcome.status.value for outcome in outcomes]
    assert statuses.count("rotated") == 1
    assert statuses.count("grace") == 1
    assert statuses.count("reused") + statuses.count("revoked") == 6
    assert statuses.count("reused") >= 1


# -- a session belongs to one user ----------------------------------------------------------


def test_a_mint_for_another_users_session_is_refused_and_writes_nothing(store: Store) -> None:
    # The session exists (imported), but nothing else does: a refused mint must not create a user
    # record, nor the global record, nor touch the session.
    record = SessionRecord(generation=7, first_generation=7, created_at=T0, expires_at=T0 + HOUR, uid="alice")
    assert store.sync.import_entries([SnapshotEntry("session", "s1", expires_at=T0 + HOUR, session=record)], T0) == 1
    with pytest.raises(SessionOwnerError, match="belongs to another user"):
        store.sync.issue("bob", T0 + 1, T0 + 2 * HOUR, "s1")
    assert store.sync.get_user("bob", T0 + 1) is None
    assert store.sync.get_global(T0 + 1) is None
    assert store.sync.get_session("s1", T0 + 1) == record
    assert store.sync.stats(T0 + 1).users == 0
    # The owner mints as before.
    assert store.sync.issue("alice", T0 + 1, T0 + 900, "s1").session_generation == 7


def test_a_mint_for_another_users_live_session_is_refused_on_the_write_path_too(store: Store) -> None:
    store.sync.issue("alice", T0, T0 + 900, "s1")
    store.sync.issue("bob", T0, T0 + 900)
    before = store.sync.get_session("s1", T0 + 1)
    bob = store.sync.get_user("bob", T0 + 1)
    # Bob's record exists and his token would extend it: the refusal comes before that write.
    with pytest.raises(SessionOwnerError):
        store.sync.issue("bob", T0 + 1, T0 + 10 * HOUR, "s1")
    assert store.sync.get_user("bob", T0 + 1) == bob
    assert store.sync.get_session("s1", T0 + 1) == before


def test_an_expired_session_of_another_user_does_not_block(store: Store) -> None:
    store.sync.issue("alice", T0, T0 + 100, "s1")
    gone = T0 + 100 + RECORD_SLACK + 1
    stamps = store.sync.issue("bob", gone, gone + 900, "s1")
    assert stamps.session_generation is not None
    record = store.sync.get_session("s1", gone)
    assert record is not None
    assert record.uid == "bob"


def test_a_session_revoked_for_nobody_blocks_no_one_and_stays_revoked(store: Store) -> None:
    assert store.sync.revoke_session("ghost", T0 + 900, T0) is False
    record = store.sync.get_session("ghost", T0)
    assert record is not None
    assert record.uid is None
    stamps = store.sync.issue("bob", T0 + 1, T0 + 900, "ghost")
    assert stamps.session_generation == record.generation
    assert store.sync.fetch("bob", None, "ghost", T0 + 1).session_revoked


def test_rotating_another_users_session_is_missing_and_writes_nothing(store: Store) -> None:
    g0 = store.sync.issue("alice", T0, T0 + 900, "s1").session_generation
    assert g0 is not None
    rotated = store.sync.rotate_session("s1", "alice", g0, T0 + 10, 5.0, T0 + 900).session
    assert rotated is not None
    # Bob presents alice's current generation, the previous one (within the grace) and an older one.
    for generation in (rotated.generation, g0, g0 - 1):
        outcome = store.sync.rotate_session("s1", "bob", generation, T0 + 11, 5.0, T0 + 900)
        assert outcome.status is RotationStatus.MISSING
        assert outcome.session is None  # nothing of alice's record is handed to bob
    assert store.sync.get_session("s1", T0 + 11) == rotated
    # Alice's grace is still hers: bob's attempts did not use it up.
    assert store.sync.rotate_session("s1", "alice", g0, T0 + 12, 5.0, T0 + 900).status is RotationStatus.GRACE


def test_revoke_session_says_whether_the_session_was_known(store: Store) -> None:
    store.sync.issue("alice", T0, T0 + 900, "s1")
    assert store.sync.revoke_session("s1", T0 + 900, T0 + 1) is True
    assert store.sync.revoke_session("s1", T0 + 900, T0 + 2) is True  # still a live (revoked) record
    assert store.sync.revoke_session("unknown", T0 + 900, T0 + 3) is False
    assert store.sync.get_session("unknown", T0 + 3) is not None
    gone = T0 + 900 + RECORD_SLACK + 1
    assert store.sync.revoke_session("s1", gone + 900, gone) is False


def test_revoking_another_users_session_with_a_uid_is_refused(store: Store) -> None:
    store.sync.issue("alice", T0, T0 + 900, "s1")
    before = store.sync.get_session("s1", T0 + 1)
    with pytest.raises(SessionOwnerError):
        store.sync.revoke_session("s1", T0 + 5 * HOUR, T0 + 1, uid="bob")
    assert store.sync.get_session("s1", T0 + 1) == before
    assert not store.sync.fetch("alice", None, "s1", T0 + 1).session_revoked
    # The owner, or a caller that names no user (an operator), revokes it.
    assert store.sync.revoke_session("s1", T0 + 900, T0 + 2, uid="alice") is True
    assert store.sync.fetch("alice", None, "s1", T0 + 2).session_revoked
    store.sync.issue("alice", T0, T0 + 900, "s2")
    assert store.sync.revoke_session("s2", T0 + 900, T0 + 2) is True


def test_a_session_revoked_unknown_for_a_user_belongs_to_that_user(store: Store) -> None:
    assert store.sync.revoke_session("s1", T0 + 900, T0, uid="bob") is False
    record = store.sync.get_session("s1", T0)
    assert record is not None
    assert (record.uid, record.revoked) == ("bob", True)
    with pytest.raises(SessionOwnerError):
        store.sync.issue("alice", T0 + 1, T0 + 900, "s1")
    with pytest.raises(SessionOwnerError):
        store.sync.revoke_session("s1", T0 + 900, T0 + 1, uid="alice")


@pytest.mark.anyio
async def test_the_async_side_keeps_sessions_to_their_owner(store: Store) -> None:
    g0 = (await store.aio.issue("alice", T0, T0 + 900, "s1")).session_generation
    assert g0 is not None
    before = await store.aio.get_session("s1", T0 + 1)
    with pytest.raises(SessionOwnerError):
        await store.aio.issue("bob", T0 + 1, T0 + 900, "s1")
    assert await store.aio.get_user("bob", T0 + 1) is None
    outcome = await store.aio.rotate_session("s1", "bob", g0, T0 + 1, 5.0, T0 + 900)
    assert (outcome.status, outcome.session) == (RotationStatus.MISSING, None)
    with pytest.raises(SessionOwnerError):
        await store.aio.revoke_session("s1", T0 + 900, T0 + 1, uid="bob")
    assert await store.aio.get_session("s1", T0 + 1) == before
    assert await store.aio.revoke_session("s1", T0 + 900, T0 + 1, uid="alice") is True
    assert await store.aio.revoke_session("other", T0 + 900, T0 + 1) is False
    assert (await store.aio.fetch("alice", None, "s1", T0 + 2)).session_revoked

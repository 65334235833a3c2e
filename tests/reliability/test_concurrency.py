"""Many tasks in several OS processes minting, checking, revoking and bumping one shared store at once.

What must hold (DESIGN.md, invariants 1, 2, 3 and 5), judged from the events every process
records on the machine-wide monotonic clock:

* once ``bump_user_epoch(u)`` (or ``bump_global_epoch()``) has returned, no check that starts
  afterwards, in any process, accepts a token of u (of anyone) minted before the bump began;
* once ``revoke_token(t)`` has returned, no check that starts afterwards accepts t;
* no check rejects a token that no bump or revocation could have touched (no false revocation);
* no bump is lost: the epochs returned for one user are all distinct, a bump that began after
  another returned got a higher epoch, and the final epoch moved at least once per bump.
"""

from __future__ import annotations

import bisect
import json
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional
from urllib.parse import quote

import pytest

from authx_epoch import EpochRevocation, open_store
from tests.plugins.redis_servers import RedisCluster, unique_prefix
from tests.properties import evidence

ROOT = Path(__file__).resolve().parents[2]
PROCESSES = 4
TASKS = 12
OPS = 50
USERS = ["u0", "u1", "u2", "u3", "u4"]


@dataclass(frozen=True)
class Backend:
    """A store URL every process can open, and a label for the counts."""

    label: str
    url: str


@pytest.fixture
def sqlite_backend(tmp_path: Path) -> Backend:
    return Backend("sqlite", f"sqlite:///{tmp_path / 'shared.db'}")


@pytest.fixture
def redis_backend(redis_url: str) -> Iterator[Backend]:
    backend = Backend("redis", f"{redis_url}?prefix={quote(unique_prefix())}")
    yield backend
    _wipe(backend.url)


@pytest.fixture
def cluster_backend(redis_cluster: RedisCluster) -> Iterator[Backend]:
    backend = Backend("redis+cluster", f"{redis_cluster.url}?prefix={quote(unique_prefix())}")
    yield backend
    _wipe(backend.url)


def _wipe(url: str) -> None:
    store = open_store(url)
    store.sync.wipe()
    store.sync.close()


@pytest.fixture(
    params=[
        pytest.param("sqlite_backend", marks=pytest.mark.sqlite),
        pytest.param("redis_backend", marks=pytest.mark.redis),
        pytest.param("cluster_backend", marks=pytest.mark.cluster),
    ]
)
def backend(request: pytest.FixtureRequest) -> Backend:
    found: Backend = request.getfixturevalue(request.param)
    return found


def run_processes(url: str) -> list[dict[str, Any]]:
    """Start every worker, release them together, and collect their events."""
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.reliability.concurrency_worker",
                url,
                str(seed),
                str(TASKS),
                str(OPS),
                ",".join(USERS),
            ],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for seed in range(PROCESSES)
    ]
    try:
        for worker in workers:
            assert worker.stdout is not None
            line = worker.stdout.readline()
            assert line.strip() == "ready", (line, worker.stderr.read() if worker.stderr else "")
        for worker in workers:
            assert worker.stdin is not None
            worker.stdin.write("go\n")
            worker.stdin.flush()
        events: list[dict[str, Any]] = []
        for worker in workers:
            out, err = worker.communicate(timeout=120)
            assert worker.returncode == 0, err
            events.extend(json.loads(line) for line in out.splitlines() if line.strip())
        return events
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
            worker.communicate()


class Bumps:
    """The bumps of one scope sorted by when they returned, for "which bumps precede this check"."""

    def __init__(self, bumps: list[dict[str, Any]]) -> None:
        self.by_return = sorted(bumps, key=lambda bump: bump["e"])
        self.returns = [bump["e"] for bump in self.by_return]
        latest = -1
        self.latest_start: list[int] = []
        for bump in self.by_return:
            latest = max(latest, bump["s"])
            self.latest_start.append(latest)
        self.starts = sorted(bump["s"] for bump in bumps)
        self.ends = sorted(bump["e"] for bump in bumps)

    def latest_start_returned_before(self, moment: int) -> Optional[int]:
        """The latest start among bumps that had returned before ``moment``."""
        index = bisect.bisect_left(self.returns, moment)
        return self.latest_start[index - 1] if index else None

    def any_could_touch(self, minted_start: int, check_end: int) -> bool:
        """Whether a bump began before the check ended and ended after the mint began."""
        # Bumps that started before check_end, minus those that also ended before minted_start.
        started = bisect.bisect_left(self.starts, check_end)
        ended_early = bisect.bisect_left(self.ends, minted_start)
        return started > ended_early


def judge(events: list[dict[str, Any]]) -> dict[str, int]:
    """Check every invariant over the events; return the counts."""
    mints = {event["jti"]: event for event in events if event["k"] == "m"}
    checks = [event for event in events if event["k"] == "c"]
    revokes: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in events:
        if event["k"] == "r":
            revokes[event["jti"]].append(event)
    bumps_by_scope: dict[Optional[str], list[dict[str, Any]]] = defaultdict(list)
    for event in events:
        if event["k"] == "b":
            bumps_by_scope[event["uid"]].append(event)
    scopes = {scope: Bumps(bumps) for scope, bumps in bumps_by_scope.items()}
    empty = Bumps([])

    counts = {"checks": len(checks), "obliged_rejections": 0, "unavailable": 0, "accepted": 0}
    for check in checks:
        minted = mints[check["jti"]]
        user, everyone = scopes.get(minted["uid"], empty), scopes.get(None, empty)
        obliged = any(
            start is not None and minted["e"] < start
            for start in (
                user.latest_start_returned_before(check["s"]),
                everyone.latest_start_returned_before(check["s"]),
            )
        ) or any(revoke["e"] < check["s"] for revoke in revokes[check["jti"]])
        counts["obliged_rejections"] += obliged
        if check["acc"] is None:
            counts["unavailable"] += 1
            continue
        if obliged:
            assert check["acc"] is False, f"a revoked token was accepted: {check} (minted {minted})"
            continue
        touched = (
            user.any_could_touch(minted["s"], check["e"])
            or everyone.any_could_touch(minted["s"], check["e"])
            or any(revoke["s"] < check["e"] for revoke in revokes[check["jti"]])
        )
        if not touched:
            assert check["acc"] is True, f"a token nothing revoked was rejected: {check} (minted {minted})"
        counts["accepted"] += check["acc"]

    for scope, bumps in scopes.items():
        epochs = [bump["epoch"] for bump in bumps.by_return]
        assert len(set(epochs)) == len(epochs), f"two bumps of {scope!r} returned the same epoch"
        for earlier in bumps.by_return:
            later = [bump for bump in bumps.by_return if bump["s"] > earlier["e"]]
            assert all(bump["epoch"] > earlier["epoch"] for bump in later), f"an epoch of {scope!r} went backwards"
    counts["bumps"] = sum(len(bumps) for bumps in bumps_by_scope.values())
    counts["revokes"] = sum(len(found) for found in revokes.values())
    counts["mints"] = len(mints)
    return counts


def test_bumps_and_revocations_hold_across_processes_and_tasks(backend: Backend) -> None:
    seed_store = open_store(backend.url)
    service = EpochRevocation(seed_store)
    seed_store.sync.setup(time.time())
    for uid in USERS:
        service.sync.issue_stamps(uid, time.time() + 3600)
    before = {uid: service.sync.get_user_record(uid) for uid in USERS}
    global_before = service.sync.get_global_record()

    events = run_processes(backend.url)
    counts = judge(events)

    for uid in USERS:
        record, first = service.sync.get_user_record(uid), before[uid]
        assert record is not None
        assert first is not None
        returned = [event["epoch"] for event in events if event["k"] == "b" and event["uid"] == uid]
        assert record.epoch == max(returned, default=first.epoch)
        assert record.epoch - first.epoch >= len(returned), "a bump was lost"
    final_global, first_global = service.sync.get_global_record(), global_before
    assert final_global is not None
    assert first_global is not None
    globals_returned = [event["epoch"] for event in events if event["k"] == "b" and event["uid"] is None]
    assert final_global.epoch - first_global.epoch >= len(globals_returned)
    seed_store.sync.close()

    # The run must have exercised what it claims to prove.
    assert counts["obliged_rejections"] > 50
    assert counts["accepted"] > 50
    assert counts["unavailable"] <= counts["checks"] // 20
    label = backend.label
    evidence.add(f"concurrency.processes.{label}", PROCESSES)
    evidence.add(f"concurrency.tasks.{label}", PROCESSES * TASKS)
    for key, value in counts.items():
        evidence.add(f"concurrency.{key}.{label}", value)


def _event(kind: str, start: int, end: int, **fields: Any) -> dict[str, Any]:
    return {"k": kind, "s": start, "e": end, **fields}


def test_the_judge_catches_a_token_accepted_after_a_bump_returned() -> None:
    minted = _event("m", 0, 1, uid="u0", jti="a")
    bump = _event("b", 2, 3, uid="u0", epoch=10)
    assert judge([minted, bump, _event("c", 4, 5, jti="a", acc=False)])["obliged_rejections"] == 1
    with pytest.raises(AssertionError, match="revoked token was accepted"):
        judge([minted, bump, _event("c", 4, 5, jti="a", acc=True)])
    # A global bump obliges the same; a check that overlaps the bump may go either way.
    with pytest.raises(AssertionError, match="revoked token was accepted"):
        judge([minted, _event("b", 2, 3, uid=None, epoch=10), _event("c", 4, 5, jti="a", acc=True)])
    assert judge([minted, bump, _event("c", 2, 5, jti="a", acc=True)])["obliged_rejections"] == 0


def test_the_judge_catches_a_revoked_token_accepted_and_a_false_revocation() -> None:
    minted = _event("m", 0, 1, uid="u0", jti="a")
    with pytest.raises(AssertionError, match="revoked token was accepted"):
        judge([minted, _event("r", 2, 3, jti="a"), _event("c", 4, 5, jti="a", acc=True)])
    with pytest.raises(AssertionError, match="nothing revoked was rejected"):
        judge([minted, _event("b", 2, 3, uid="u1", epoch=10), _event("c", 4, 5, jti="a", acc=False)])


def test_the_judge_catches_lost_and_repeated_bumps() -> None:
    with pytest.raises(AssertionError, match="same epoch"):
        judge([_event("b", 0, 1, uid="u0", epoch=10), _event("b", 0, 2, uid="u0", epoch=10)])
    with pytest.raises(AssertionError, match="went backwards"):
        judge([_event("b", 0, 1, uid="u0", epoch=10), _event("b", 2, 3, uid="u0", epoch=9)])

"""Several OS processes sharing one SQLite file: a bump in one is seen by the others, and
concurrent bumps lose no increment. The other processes are real interpreters (``python -c``).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import authx_epoch
from authx_epoch import Reason, SqliteStore
from tests.conftest import FakeClock
from tests.helpers import SECRET, bearer, build_app, client, make_auth

pytestmark = [pytest.mark.sqlite, pytest.mark.anyio]

ROOT = Path(__file__).resolve().parents[2]


def python(code: str, *args: str) -> subprocess.Popen[str]:
    """Start another interpreter running ``code`` with ``args`` as ``sys.argv[1:]``."""
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen[str]) -> str:
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    return out


BUMP_USER = """
    import sys
    from authx_epoch import EpochRevocation, SqliteStore
    store = SqliteStore(sys.argv[1])
    record = EpochRevocation(store).sync.bump_user_epoch(sys.argv[2], reason="from another process")
    store.close()
    print(record.epoch)
"""

BUMP_GLOBAL = """
    import sys
    from authx_epoch import EpochRevocation, SqliteStore
    store = SqliteStore(sys.argv[1])
    print(EpochRevocation(store).sync.bump_global_epoch(reason="rotation").epoch)
    store.close()
"""


async def test_a_bump_in_another_process_is_rejected_here(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "shared.db"
    h = build_app(f"sqlite:///{path}", clock=clock)
    alice = h.auth.create_access_token(uid="alice")
    bob = h.auth.create_access_token(uid="bob")
    async with client(h.app) as c:
        assert (await c.get("/protected", headers=bearer(alice))).status_code == 200
        epoch = int(finish(python(BUMP_USER, str(path), "alice")))
        # no restart, no cache to expire: the very next check sees the other process's bump
        assert (await c.get("/protected", headers=bearer(alice))).status_code == 401
        assert (await c.get("/protected", headers=bearer(bob))).status_code == 200
        record = await h.rev.get_user_record("alice")
        assert record is not None
        assert (record.epoch, record.reason) == (epoch, "from another process")
        assert (await h.rev.check(alice)).reason is Reason.USER_EPOCH
        fresh = h.auth.create_access_token(uid="alice")
        assert (await c.get("/protected", headers=bearer(fresh))).status_code == 200

        finish(python(BUMP_GLOBAL, str(path)))
        for token in (bob, fresh):
            assert (await c.get("/protected", headers=bearer(token))).status_code == 401
    h.rev.store.sync.close()


CHECK = """
    import sys
    from authx import AuthX, AuthXConfig
    import authx_epoch
    auth = AuthX(config=AuthXConfig(JWT_SECRET_KEY=sys.argv[2], JWT_TOKEN_LOCATION=["headers"]))
    revocation = authx_epoch.install(auth, store="sqlite:///" + sys.argv[1])
    print(revocation.sync.check(sys.argv[3]).reason.value)
    revocation.store.sync.close()
"""


def test_a_bump_here_is_rejected_in_another_process(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "shared.db"
    auth = make_auth()
    rev = authx_epoch.install(auth, store=f"sqlite:///{path}", clock=clock)
    token = auth.create_access_token(uid="alice")
    assert finish(python(CHECK, str(path), SECRET, token)).strip() == "accepted"
    clock.advance(1)
    rev.sync.bump_user_epoch("alice")
    assert finish(python(CHECK, str(path), SECRET, token)).strip() == "user_epoch"
    rev.store.sync.close()


HAMMER = """
    import json, sys
    from authx_epoch import SqliteStore
    store = SqliteStore(sys.argv[1], write_timeout=30.0)
    now, count = float(sys.argv[2]), int(sys.argv[3])
    # The same clock value for every bump, so each one must be exactly "current + 1".
    epochs = [store.bump_user("alice", now, "hammer", now + 3600).epoch for _ in range(count)]
    store.close()
    print(json.dumps(epochs))
"""


def test_concurrent_bumps_from_several_processes_lose_no_increment(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    now = 1_700_000_000.0
    store = SqliteStore(path)
    start = store.issue("alice", now, now + 3600).user_epoch
    processes, per_process = 4, 40
    running = [python(HAMMER, str(path), repr(now), str(per_process)) for _ in range(processes)]
    returned: list[int] = []
    for process in running:
        returned += json.loads(finish(process))
    total = processes * per_process
    assert len(returned) == total
    assert len(set(returned)) == total, "two bumps returned the same epoch"
    assert sorted(returned) == list(range(start + 1, start + total + 1))
    final = store.get_user("alice", now)
    assert final is not None
    assert final.epoch == start + total
    assert final.reason == "hammer"
    store.close()

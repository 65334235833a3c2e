"""Faults injected into a real store while a real app serves traffic: no revoked token is ever accepted.

Each test builds one FastAPI app (fail-closed, the default) over a real SQLite file or a real
``redis-server`` of its own, mints tokens (valid, revoked by jti, by session, by a user bump),
and keeps requests flowing from a background task while the fault is injected from another
thread and then healed. Throughout, every answer is checked:

* a revoked token is never answered 200;
* every answer is a 200, AuthX's 401, or the documented 503 ``{"message", "error_type":
  "StoreUnavailableError"}``, never a 500.

Quiet probes between the steps check the exact answers: what the app says before the fault,
during it (503 for every stamped token), and after it (the same as before when the state
survived; 401 for every old token when it was lost, and new logins work), all without
restarting the app.

Sessions ride along: a live session (``create_token_pair``) and one revoked because its rotated
refresh token was replayed. A rotation during the fault is refused with the 503 (or
``StoreUnavailableError``) and mints nothing: once the store is back, the session is at the
generation it had and its refresh token rotates as the current one. After a loss, a rotation is
refused like any revoked token (401, never a new pair, never taken for a replay).

Why not ``chmod 000``: CI runs as root, which reads the file anyway. The file is instead
replaced by a directory, or by bytes that are not a database, which stops root too.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import httpx
import pytest
from authx import AuthX, AuthXConfig, TokenPayload
from authx.exceptions import RevokedTokenError
from fastapi import Depends, FastAPI, Request

import authx_epoch
from authx_epoch import EpochRevocation, RefreshTokenReusedError, SessionTokens, SqliteStore
from authx_epoch.integrations.authx import STORE_UNAVAILABLE_MESSAGE
from authx_epoch.stores import Store
from tests.conftest import FakeClock
from tests.plugins.redis_servers import RedisServer, unique_prefix
from tests.properties import evidence

SECRET = "authx-epoch-faults-secret-0123456789abcdef"
UNAVAILABLE_BODY = {"message": STORE_UNAVAILABLE_MESSAGE, "error_type": "StoreUnavailableError"}
REVOKED_BODY = {"message": "Invalid token", "error_type": "RevokedTokenError"}
#: Responses the background traffic must see after each step, so the fault really is mid-traffic.
TRAFFIC_PER_STEP = 12
#: The grace interval of refresh-token rotation; the scenario's clock steps past it to catch a replay.
GRACE = dt.timedelta(seconds=5)


@dataclass
class Harness:
    """One app, its AuthX and service, the tokens it minted, and every answer it gave."""

    app: FastAPI
    auth: AuthX[Any]
    rev: EpochRevocation
    clock: FakeClock
    valid: dict[str, str] = field(default_factory=dict)
    revoked: dict[str, str] = field(default_factory=dict)
    answers: int = 0
    revoked_accepted: list[str] = field(default_factory=list)
    seen: set[int] = field(default_factory=set)
    #: A live session whose refresh token the probes rotate, and the session's generation.
    session: Optional[SessionTokens] = None
    #: The refresh tokens of a session revoked because one of them was replayed.
    reused_refresh: tuple[str, ...] = ()

    def login(self, uid: str, session: Optional[str] = None) -> str:
        data = {"session_id": session} if session else None
        return self.auth.create_access_token(uid, data=data, expiry=dt.timedelta(minutes=30))

    @property
    def sid(self) -> str:
        assert self.session is not None
        return self.session.session_id


def build(store: Store) -> Harness:
    app = FastAPI()
    auth: AuthX[Any] = AuthX(config=AuthXConfig(JWT_SECRET_KEY=SECRET, JWT_TOKEN_LOCATION=["headers"]))
    auth.handle_errors(app)
    clock = FakeClock()
    rev = authx_epoch.install(auth, store=store, app=app, clock=clock, refresh_reuse_grace=GRACE)

    @app.get("/protected")
    async def protected(payload: TokenPayload = Depends(auth.access_token_required)) -> dict[str, Any]:  # noqa: B008
        return {"sub": payload.sub}

    @app.post("/bump/{uid}")
    async def bump(uid: str) -> dict[str, Any]:
        return {"epoch": (await rev.bump_user_epoch(uid, reason="admin")).epoch}

    @app.post("/rotate")
    async def rotate(request: Request) -> SessionTokens:
        token = (request.headers.get("authorization") or "").removeprefix("Bearer ")
        return await rev.rotate_refresh_token(token)

    return Harness(app, auth, rev, clock)


def mint_scenario(harness: Harness, before_bump: Callable[[], None] = lambda: None) -> None:
    """Tokens of every kind: one that must be accepted, three revoked three different ways."""
    rev = harness.rev
    harness.valid["valid"] = harness.login("alice", "s-alice")
    by_jti = harness.login("bob")
    rev.sync.revoke_token(by_jti)
    by_session = harness.login("carol", "s-carol")
    rev.sync.revoke_session("s-carol")
    by_bump = harness.login("dave")
    before_bump()
    rev.sync.bump_user_epoch("dave", reason="password_change")
    harness.revoked.update({"jti": by_jti, "session": by_session, "bump": by_bump})
    # Sessions: one live, one revoked because its replaced refresh token came back after the grace.
    harness.session = rev.sync.create_token_pair("gina")
    harness.valid["pair"] = harness.session.access_token
    stolen = rev.sync.create_token_pair("hank")
    rotated = rev.sync.rotate_refresh_token(stolen.refresh_token)
    harness.clock.advance(GRACE.total_seconds() + 1.0)
    with pytest.raises(RefreshTokenReusedError):
        rev.sync.rotate_refresh_token(stolen.refresh_token)
    harness.revoked["reused"] = rotated.access_token
    harness.reused_refresh = (stolen.refresh_token, rotated.refresh_token)


async def ask(http: httpx.AsyncClient, harness: Harness, name: str, token: str) -> int:
    """One request; checks the answer's shape and that no revoked token gets through."""
    response = await http.get("/protected", headers={"Authorization": f"Bearer {token}"})
    status = response.status_code
    harness.answers += 1
    harness.seen.add(status)
    if status == 503:
        assert response.json() == UNAVAILABLE_BODY
        assert response.headers.get("retry-after") == "1"
    elif status == 401:
        assert response.json() == REVOKED_BODY
    else:
        assert status == 200, response.text
        if name in harness.revoked:
            harness.revoked_accepted.append(name)
    return status


async def probe(http: httpx.AsyncClient, harness: Harness) -> dict[str, int]:
    tokens = {**harness.valid, **harness.revoked}
    return {name: await ask(http, harness, name, token) for name, token in tokens.items()}


class Traffic:
    """Requests with every token, round after round, in a background task."""

    def __init__(self, http: httpx.AsyncClient, harness: Harness) -> None:
        self.http, self.harness = http, harness
        self.count = 0
        self.stop = asyncio.Event()
        self._progress = asyncio.Event()

    async def run(self) -> None:
        while not self.stop.is_set():
            for name, token in [*self.harness.valid.items(), *self.harness.revoked.items()]:
                await ask(self.http, self.harness, name, token)
                self.count += 1
                self._progress.set()
            await asyncio.sleep(0)  # a yield to the other tasks, not a wait for time

    async def more(self, responses: int) -> None:
        """Return once the background traffic has had ``responses`` more answers."""
        target = self.count + responses
        while self.count < target:
            self._progress.clear()
            await self._progress.wait()


class Serving:
    """An event loop running the app's client and the background traffic, driven step by step."""

    def __init__(self, harness: Harness) -> None:
        self.harness = harness
        self.loop = asyncio.new_event_loop()
        self.http = httpx.AsyncClient(transport=httpx.ASGITransport(app=harness.app), base_url="http://testserver")
        self.traffic = Traffic(self.http, harness)
        self.background = self.loop.create_task(self.traffic.run())

    def run(self, coroutine: Any) -> Any:
        return self.loop.run_until_complete(coroutine)

    def probe(self) -> dict[str, int]:
        """The exact answer for every token, asked while the traffic is paused."""
        return self.run(probe(self.http, self.harness))

    def inject(self, action: Callable[[], None], kind: str) -> None:
        """Run ``action`` in another thread while the traffic flows, then let the traffic see its effect."""

        async def step() -> None:
            await self.traffic.more(TRAFFIC_PER_STEP // 2)
            await asyncio.to_thread(action)
            evidence.add(f"faults.{kind}")
            await self.traffic.more(TRAFFIC_PER_STEP)

        self.run(step())

    def post(self, path: str) -> httpx.Response:
        return self.run(self.http.post(path))

    def rotate(self, refresh_token: str) -> httpx.Response:
        return self.run(self.http.post("/rotate", headers={"Authorization": f"Bearer {refresh_token}"}))

    def generation(self) -> int:
        """The live session's generation, read while the store is healthy."""
        record = self.harness.rev.sync.get_session_record(self.harness.sid)
        assert record is not None
        assert not record.revoked
        return record.generation

    def rotation_refused_while_down(self) -> None:
        """A rotation during the fault: the documented 503 (or the error), and nothing minted."""
        session = self.harness.session
        assert session is not None
        response = self.rotate(session.refresh_token)
        assert response.status_code == 503, response.text
        assert response.json() == UNAVAILABLE_BODY
        with pytest.raises(authx_epoch.StoreUnavailableError):
            self.harness.rev.sync.rotate_refresh_token(session.refresh_token)
        evidence.add("faults.rotations_refused_503")

    def rotation_resumes(self, generation: int) -> None:
        """After the fault, the session is where it was: its refresh token rotates as the current one."""
        session = self.harness.session
        assert session is not None
        assert self.generation() == generation, "a refused rotation moved the session"
        response = self.rotate(session.refresh_token)
        assert response.status_code == 200, response.text
        fresh = SessionTokens.model_validate(response.json())
        assert fresh.session_id == session.session_id
        assert self.generation() > generation
        assert (
            self.run(self.http.get("/protected", headers={"Authorization": f"Bearer {fresh.access_token}"})).status_code
            == 200
        )
        for token in self.harness.reused_refresh:
            assert self.rotate(token).json() == REVOKED_BODY
        evidence.add("faults.rotations_after_recovery")

    def rotation_refused_after_loss(self) -> None:
        """After a loss, every rotation is refused like a revoked token: never a pair, never a "reuse"."""
        session = self.harness.session
        assert session is not None
        for token in (session.refresh_token, *self.harness.reused_refresh):
            response = self.rotate(token)
            assert response.status_code == 401, response.text
            assert response.json() == REVOKED_BODY
            with pytest.raises(RevokedTokenError) as refused:
                self.harness.rev.sync.rotate_refresh_token(token)
            assert not isinstance(refused.value, RefreshTokenReusedError)
        assert self.harness.rev.sync.get_session_record(self.harness.sid) is None
        evidence.add("faults.rotations_refused_after_loss")

    def close(self) -> None:
        self.traffic.stop.set()
        self.run(self.background)
        self.run(self.http.aclose())
        self.run(self.harness.rev.store.aio.close())
        self.run(self.loop.shutdown_asyncgens())
        self.run(self.loop.shutdown_default_executor())
        self.loop.close()
        self.harness.rev.store.sync.close()


@contextmanager
def serving(harness: Harness) -> Iterator[Serving]:
    """Serve ``harness`` with background traffic; afterwards, check every answer it gave."""
    session = Serving(harness)
    try:
        yield session
    finally:
        session.close()
    assert harness.revoked_accepted == [], f"revoked tokens accepted: {harness.revoked_accepted}"
    assert harness.seen <= {200, 401, 503}
    evidence.add("faults.answers_checked", harness.answers)


HEALTHY = {"valid": 200, "pair": 200, "jti": 401, "session": 401, "bump": 401, "reused": 401}
DOWN = dict.fromkeys(HEALTHY, 503)
LOST = dict.fromkeys(HEALTHY, 401)


async def recovered_after_loss(http: httpx.AsyncClient, harness: Harness) -> None:
    """After a loss, a new login works and a new revocation takes: the service is back, unrestarted."""
    fresh = harness.login("alice", "s-new")
    assert await ask(http, harness, "fresh", fresh) == 200
    await harness.rev.revoke_token(fresh)
    assert await ask(http, harness, "fresh", fresh) == 401
    bumped = (await http.post("/bump/erin")).status_code
    assert bumped == 200
    # A new session rotates as usual.
    pair = await harness.rev.create_token_pair("ivy")
    rotated = await http.post("/rotate", headers={"Authorization": f"Bearer {pair.refresh_token}"})
    assert rotated.status_code == 200, rotated.text
    assert await ask(http, harness, "fresh-session", rotated.json()["access_token"]) == 200


# -- SQLite ------------------------------------------------------------------------------------


@pytest.fixture
def sqlite_harness(tmp_path: Path) -> Harness:
    # The file sits in a directory of its own, so a fault can move it with its -wal and -shm at once.
    db = tmp_path / "store" / "revocation.db"
    db.parent.mkdir()
    # Short timeouts: a locked or missing file is reported in a fraction of a second.
    harness = build(SqliteStore(db, read_timeout=0.05, write_timeout=0.2))

    def checkpoint() -> None:
        # Fold everything so far into the file: the bump that follows then lives in the -wal only,
        # which is what a fault that separates the two must not lose.
        conn = sqlite3.connect(db)
        try:
            conn.execute("PRAGMA wal_checkpoint(FULL)").fetchall()
        finally:
            conn.close()

    mint_scenario(harness, before_bump=checkpoint)
    return harness


def _db(harness: Harness) -> Path:
    store = harness.rev.store
    assert isinstance(store, SqliteStore)
    return Path(store.path)


@pytest.mark.sqlite
@pytest.mark.parametrize("replacement", ["directory", "garbage"])
def test_sqlite_file_made_unreadable_then_restored(sqlite_harness: Harness, replacement: str) -> None:
    """The path becomes a directory, or bytes that are not a database: 503s, then service as before."""
    harness, db = sqlite_harness, _db(sqlite_harness)
    home, aside, broken = db.parent, db.parent.with_name("aside"), db.parent.with_name("broken")
    # Prepared beforehand and swapped in with renames, so no request ever finds the path empty
    # (the store would rightly start a fresh, empty database there).
    broken.mkdir()
    if replacement == "directory":
        (broken / db.name).mkdir()
    else:
        (broken / db.name).write_bytes(b"this is not an SQLite database\n" * 512)

    def break_file() -> None:
        os.rename(home, aside)
        os.rename(broken, home)

    def restore_file() -> None:
        os.rename(home, broken)
        os.rename(aside, home)

    with serving(harness) as app:
        assert app.probe() == HEALTHY
        generation = app.generation()
        app.inject(break_file, f"sqlite.{replacement}")
        assert app.probe() == DOWN
        # A login during the outage is refused too, never a token minted without its stamp.
        with pytest.raises(authx_epoch.StoreUnavailableError):
            harness.login("frank")
        app.rotation_refused_while_down()
        app.inject(restore_file, "sqlite.restored")
        assert app.probe() == HEALTHY
        app.rotation_resumes(generation)


@pytest.mark.sqlite
def test_sqlite_file_moved_away_alone_and_put_back_keeps_its_latest_bump(sqlite_harness: Harness) -> None:
    """Found by this suite: with the file gone but its -wal left, the store used to start a fresh
    database paired with that log, fold the log into it, and so lose the bump the log held: once
    the file was put back, the bumped token was accepted again. Now the store answers 503 until
    the file is back, and nothing is lost.
    """
    harness, db = sqlite_harness, _db(sqlite_harness)
    aside = db.with_name("aside.db")
    assert db.with_name(db.name + "-wal").exists()

    with serving(harness) as app:
        assert app.probe() == HEALTHY
        generation = app.generation()
        app.inject(lambda: os.rename(db, aside), "sqlite.moved_alone")
        assert app.probe() == DOWN
        app.rotation_refused_while_down()
        app.inject(lambda: os.rename(aside, db), "sqlite.put_back")
        assert app.probe() == HEALTHY
        app.rotation_resumes(generation)


@pytest.mark.sqlite
def test_sqlite_write_lock_held_by_another_process(sqlite_harness: Harness) -> None:
    """In WAL mode an exclusive write lock blocks bumps and logins (503) but never the checks."""
    harness, db = sqlite_harness, _db(sqlite_harness)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sqlite3, sys\n"
            "c = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
            "c.execute('BEGIN EXCLUSIVE')\n"
            "print('locked', flush=True)\n"
            "sys.stdin.readline()\n"
            "c.execute('ROLLBACK')\n",
            str(db),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        with serving(harness) as app:
            assert app.probe() == HEALTHY
            generation = app.generation()

            def lock() -> None:
                assert holder.stdout is not None
                assert holder.stdout.readline().strip() == "locked"

            app.inject(lock, "sqlite.locked")
            assert app.probe() == HEALTHY  # reads go on, exactly as before
            response = app.post("/bump/alice")
            assert response.status_code == 503
            assert response.json() == UNAVAILABLE_BODY
            with pytest.raises(authx_epoch.StoreUnavailableError):
                harness.login("frank")
            # The refresh token still checks (a read), but the rotation cannot be written: 503.
            app.rotation_refused_while_down()

            def unlock() -> None:
                assert holder.stdin is not None
                holder.stdin.write("\n")
                holder.stdin.flush()
                assert holder.wait(timeout=30) == 0

            app.inject(unlock, "sqlite.unlocked")
            # The refused bump changed nothing; a bump now goes through and takes effect at once.
            assert app.probe() == HEALTHY
            app.rotation_resumes(generation)
            assert app.post("/bump/alice").status_code == 200
            assert app.probe() == {**HEALTHY, "valid": 401}
    finally:
        if holder.poll() is None:
            holder.kill()
        holder.communicate()


@pytest.mark.sqlite
@pytest.mark.parametrize("loss", ["deleted", "wiped"])
def test_sqlite_state_lost_mid_traffic(sqlite_harness: Harness, loss: str) -> None:
    harness, db = sqlite_harness, _db(sqlite_harness)

    def lose() -> None:
        if loss == "wiped":
            harness.rev.store.sync.wipe()
            return
        for path in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
            path.unlink(missing_ok=True)

    with serving(harness) as app:
        assert app.probe() == HEALTHY
        app.inject(lose, f"sqlite.{loss}")
        assert app.probe() == LOST
        app.rotation_refused_after_loss()
        app.run(recovered_after_loss(app.http, harness))
        assert app.probe() == LOST


# -- Redis -------------------------------------------------------------------------------------


@pytest.fixture
def redis_harness(private_redis: RedisServer) -> tuple[Harness, RedisServer]:
    # A short socket timeout: a frozen server is reported within a tenth of a second.
    url = f"{private_redis.url}?prefix={unique_prefix()}&socket_timeout=0.1&socket_connect_timeout=0.1"
    harness = build(authx_epoch.open_store(url))
    mint_scenario(harness)
    return harness, private_redis


@pytest.mark.redis
def test_redis_killed_then_restarted_empty(redis_harness: tuple[Harness, RedisServer]) -> None:
    harness, server = redis_harness
    with serving(harness) as app:
        assert app.probe() == HEALTHY
        app.inject(server.stop, "redis.killed")
        assert app.probe() == DOWN
        with pytest.raises(authx_epoch.StoreUnavailableError):
            harness.login("frank")
        app.rotation_refused_while_down()
        # Restarted without persistence: everything it held is gone, so old tokens are refused.
        app.inject(server.start, "redis.restarted")
        assert app.probe() == LOST
        app.rotation_refused_after_loss()
        app.run(recovered_after_loss(app.http, harness))


@pytest.mark.redis
def test_redis_frozen_then_resumed(redis_harness: tuple[Harness, RedisServer]) -> None:
    harness, server = redis_harness
    with serving(harness) as app:
        assert app.probe() == HEALTHY
        generation = app.generation()
        app.inject(server.pause, "redis.frozen")
        assert app.probe() == DOWN
        app.rotation_refused_while_down()
        app.inject(server.resume, "redis.resumed")
        assert app.probe() == HEALTHY
        app.rotation_resumes(generation)


@pytest.mark.redis
def test_redis_flushed_mid_traffic(redis_harness: tuple[Harness, RedisServer]) -> None:
    harness, server = redis_harness

    def flush() -> None:
        client = server.client()
        try:
            client.flushall()
        finally:
            client.close()

    with serving(harness) as app:
        assert app.probe() == HEALTHY
        app.inject(flush, "redis.flushed")
        assert app.probe() == LOST
        app.rotation_refused_after_loss()
        app.run(recovered_after_loss(app.http, harness))
        assert app.probe() == LOST

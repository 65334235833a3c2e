"""Two real OS processes, each running a real AuthX + FastAPI app on the cached Redis store.

A bump or a revocation made in process A must be rejected by process B within the staleness
bound, although B answers its checks from memory. B polls its own app in a tight loop (bounded
by a deadline) and reports when it first answers 401; both processes read the system-wide
monotonic clock, so the delay is measured across them. The delays are printed (``-s`` shows them).
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import subprocess
import sys
import time
from collections.abc import Iterator
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import bearer, build_app, client
from tests.plugins.redis_servers import RedisServer, unique_prefix

pytest.importorskip("redis")

pytestmark = pytest.mark.redis

ROOT = Path(__file__).resolve().parents[2]
#: How long B waits for a 401 before the test fails (far beyond any bound under test).
WATCH_DEADLINE = 10.0


# -- what runs in each process ------------------------------------------------------------------


def app_process(url: str, conn: Connection) -> None:
    """One application process: a real app on ``url``, driven by commands from the test."""
    asyncio.run(_serve(url, conn))


async def _serve(url: str, conn: Connection) -> None:
    harness = build_app(url)
    store: Any = harness.rev.store
    try:
        async with client(harness.app) as http:

            async def status(token: str) -> int:
                return (await http.get("/protected", headers=bearer(token))).status_code

            while True:
                command, *args = conn.recv()
                if command == "mint":
                    conn.send(harness.auth.create_access_token(uid=args[0]))
                elif command == "get":
                    conn.send(await status(args[0]))
                elif command == "connected":
                    deadline = time.monotonic() + 5
                    while not getattr(store, "connected", True) and time.monotonic() < deadline:  # noqa: ASYNC110
                        await asyncio.sleep(0.005)  # waiting for the subscriber thread, not a clock
                    conn.send(getattr(store, "connected", None))
                elif command == "watch":
                    token, count = args[0], 0
                    conn.send("watching")
                    deadline = time.monotonic() + WATCH_DEADLINE
                    while time.monotonic() < deadline:
                        count += 1
                        if await status(token) == 401:
                            conn.send(("rejected", time.monotonic(), count))
                            break
                    else:
                        conn.send(("still accepted", time.monotonic(), count))
                elif command == "bump":
                    await harness.rev.bump_user_epoch(args[0], reason="from process A")
                    conn.send(time.monotonic())
                elif command == "revoke":
                    await harness.rev.revoke_token(args[0])
                    conn.send(time.monotonic())
                elif command == "stop":
                    conn.send("stopped")
                    return
    finally:
        store.close()


# -- the test's side ----------------------------------------------------------------------------


class App:
    """A handle on an application process."""

    def __init__(self, url: str) -> None:
        context = multiprocessing.get_context("spawn")
        self.conn, theirs = context.Pipe()
        self.process = context.Process(target=app_process, args=(url, theirs), daemon=True)
        self.process.start()

    def ask(self, *command: Any) -> Any:
        self.conn.send(command)
        if not self.conn.poll(60):
            raise AssertionError(f"the app process did not answer {command[0]!r}")
        return self.conn.recv()

    def stop(self) -> None:
        if self.process.is_alive():
            with contextlib.suppress(AssertionError, OSError, EOFError):
                self.ask("stop")
        self.process.join(10)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(10)


@pytest.fixture
def apps() -> Iterator[list[App]]:
    started: list[App] = []
    yield started
    for app in started:
        app.stop()


def start(apps: list[App], url: str) -> App:
    app = App(url)
    apps.append(app)
    return app


def evalsha_ro_calls(server: RedisServer) -> int:
    connection = server.client()
    try:
        stats = connection.info("commandstats")
    finally:
        connection.close()
    return int(stats.get("cmdstat_evalsha_ro", {}).get("calls", 0))


def watch_while(b: App, token: str, act: Any) -> tuple[float, float, int]:
    """Start B polling ``token``, run ``act()`` (returns when the write returned), return the delay."""
    assert b.ask("watch", token) == "watching"
    done = act()
    outcome, seen, polls = b.conn.recv() if b.conn.poll(WATCH_DEADLINE + 30) else ("no answer", 0.0, 0)
    assert outcome == "rejected", f"B still accepted the token {WATCH_DEADLINE} s after the write"
    return seen - done, done, polls


def test_a_bump_and_a_revocation_in_a_are_rejected_by_b_within_the_bound(
    private_redis: RedisServer, apps: list[App]
) -> None:
    url = f"{private_redis.url}?local_cache=1&prefix={unique_prefix()}"
    a, b = start(apps, url), start(apps, url)
    assert a.ask("connected") is True
    assert b.ask("connected") is True
    token = a.ask("mint", "alice")
    other = a.ask("mint", "bob")
    assert b.ask("get", token) == 200
    # B now answers from memory: 50 checks, at most one read of Redis (an answer aging out).
    before = evalsha_ro_calls(private_redis)
    assert [b.ask("get", token) for _ in range(50)] == [200] * 50
    assert evalsha_ro_calls(private_redis) - before <= 1

    delay, _, polls = watch_while(b, token, lambda: a.ask("bump", "alice"))
    print(f"\nbump in A rejected by B after {delay * 1000:.2f} ms ({polls} checks in B)")
    assert delay < 1.0  # the default staleness bound; the channel makes it milliseconds
    assert b.ask("get", token) == 401

    assert b.ask("get", other) == 200
    delay, _, polls = watch_while(b, other, lambda: a.ask("revoke", other))
    print(f"revoke_token in A rejected by B after {delay * 1000:.2f} ms ({polls} checks in B)")
    assert delay < 1.0
    assert b.ask("get", other) == 401


def test_a_writer_without_the_cache_is_seen_within_the_staleness_bound(
    private_redis: RedisServer, apps: list[App]
) -> None:
    prefix = unique_prefix()
    staleness = 0.3
    b = start(apps, f"{private_redis.url}?local_cache=1&cache_staleness={staleness}&prefix={prefix}")
    a = start(apps, f"{private_redis.url}?prefix={prefix}")  # publishes nothing
    assert b.ask("connected") is True
    token = a.ask("mint", "alice")
    assert b.ask("get", token) == 200
    delay, _, polls = watch_while(b, token, lambda: a.ask("bump", "alice"))
    print(f"\nbump by a writer without the cache rejected by B after {delay * 1000:.1f} ms ({polls} checks)")
    # No message: only the age of B's answer ends it, so B held it for a while, but never past the bound.
    assert delay < staleness + 0.05


def test_the_cli_with_the_url_option_publishes_its_bump(private_redis: RedisServer, apps: list[App]) -> None:
    url = f"{private_redis.url}?local_cache=1&cache_staleness=30&prefix={unique_prefix()}"
    b = start(apps, url)
    assert b.ask("connected") is True
    token = b.ask("mint", "alice")
    assert b.ask("get", token) == 200

    def operator_bump() -> float:
        subprocess.run(
            [sys.executable, "-m", "authx_epoch", "bump", "alice", "--reason", "operator", "--store", url],
            cwd=ROOT,
            check=True,
            capture_output=True,
            timeout=60,
        )
        return time.monotonic()

    # A 30 s bound: a rejection within seconds can only come from the CLI's message.
    delay, _, _ = watch_while(b, token, operator_bump)
    print(f"\nCLI bump rejected by B at most {max(delay, 0) * 1000:.1f} ms after the command exited")
    assert delay < 5.0

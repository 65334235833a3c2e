"""Many callers refreshing with one refresh token at once: asyncio tasks, threads, and several OS processes.

What must hold for ``rotate_refresh_token`` (issue 7, rotation with reuse detection):

* within the grace interval, the replaced refresh token is answered once more (issue 10, item 6):
  two callers presenting the same token (two tabs, or a retry) both get a working pair of the
  same session and no reuse is declared; a third is a replay: the reuse is declared exactly once,
  the session ends revoked, and the pairs the first two got die with it. So a thief holding the
  previous token gets at most the one grace answer, and only if the legitimate client has not
  used it up;
* the session's generation moves once per presented generation: every pair answered for one
  token carries the same new generation. Each service (and each process) runs on a clock a
  millisecond apart from the others, so a store that let two callers rotate the same generation
  would hand out two different "current" generations, and this test would see them;
* after the grace, every replay of the replaced token is refused, the store declares the reuse
  exactly once (the atomic step that revokes the session), the session ends revoked, and every
  token minted for it, those the legitimate caller got in the same instant included, is rejected.

Clocks are injected (``FakeClock``; the processes get "now" from the parent), so nothing sleeps.
Run as ``python -m tests.reliability.test_rotation_concurrency URL INDEX TASKS``, the module is the
worker of the multi-process test.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union
from urllib.parse import quote

import httpx
import pytest
from authx import AuthX
from authx.exceptions import RevokedTokenError
from fastapi import FastAPI, Request

import authx_epoch
from authx_epoch import EpochRevocation, RefreshTokenReusedError, SessionTokens, open_store
from authx_epoch.stores import Store
from tests.conftest import FakeClock
from tests.helpers import bearer, claims_of, make_auth
from tests.plugins.redis_servers import RedisCluster, unique_prefix
from tests.properties import evidence

ROOT = Path(__file__).resolve().parents[2]
GRACE = 5.0
#: Services sharing one store in the in-process tests (like the workers of one app), and the
#: concurrent callers each of them serves.
SERVICES = 4
TASKS_PER_SERVICE = 8
#: OS processes and the concurrent callers in each, in the multi-process tests.
PROCESSES = 3
TASKS_PER_PROCESS = 8
#: Clock offset between two services or processes: enough for distinct generations (microseconds).
SKEW = 1e-3

#: What one caller got: a pair, or the name of the error it was refused with.
Answer = Union[SessionTokens, str]


class SkewedClock:
    """A view of a shared ``FakeClock``, ``offset`` seconds ahead (another worker's clock)."""

    def __init__(self, base: FakeClock, offset: float) -> None:
        self.base, self.offset = base, offset

    def __call__(self) -> float:
        return self.base() + self.offset


@dataclass
class Worker:
    """One service over the shared store, its app, and an HTTP client to the app."""

    auth: AuthX[Any]
    rev: EpochRevocation
    http: httpx.AsyncClient


def refresh_app(auth: AuthX[Any], rev: EpochRevocation) -> FastAPI:
    """The refresh endpoint the sessions page shows, with AuthX's error handlers."""
    app = FastAPI()
    auth.handle_errors(app)

    @app.post("/refresh")
    async def refresh(request: Request) -> SessionTokens:
        token = (request.headers.get("authorization") or "").removeprefix("Bearer ")
        return await rev.rotate_refresh_token(token)

    return app


async def rotate(worker: Worker, token: str, channel: str) -> Answer:
    """One refresh through ``channel``: the service, its blocking twin in a thread, or HTTP."""
    if channel == "http":
        response = await worker.http.post("/refresh", headers=bearer(token))
        if response.status_code == 200:
            return SessionTokens.model_validate(response.json())
        assert response.status_code == 401, response.text
        error_type: str = response.json()["error_type"]
        return error_type
    try:
        if channel == "thread":
            return await asyncio.to_thread(worker.rev.sync.rotate_refresh_token, token)
        return await worker.rev.rotate_refresh_token(token)
    except RevokedTokenError as exc:  # RefreshTokenReusedError included
        return type(exc).__name__


#: Threads first: their calls are all under way before the first one returns, so a store that is
#: not atomic under threads is raced even where the async side runs inline (memory, SQLite reads).
CHANNELS = ("thread", "async", "http")


async def storm(workers: list[Worker], tokens: list[str]) -> list[Answer]:
    """Every worker's callers present their tokens at once; ``tokens`` has one entry per caller.

    Callers take turns over the workers, and come in three blocks: threads, async, HTTP.
    """
    calls = []
    for index, token in enumerate(tokens):
        worker = workers[index % len(workers)]
        calls.append(rotate(worker, token, CHANNELS[index * len(CHANNELS) // len(tokens)]))
    return list(await asyncio.gather(*calls))


def generation(token: str) -> int:
    value: int = claims_of(token)["sgen"]
    return value


def pairs_of(answers: list[Answer]) -> list[SessionTokens]:
    return [answer for answer in answers if isinstance(answer, SessionTokens)]


async def served(store: Store, clock: FakeClock, stack: AsyncExitStack) -> list[Worker]:
    """``SERVICES`` services over ``store``, each on its own (skewed) clock, app and client."""
    workers = []
    for index in range(SERVICES):
        auth = make_auth()
        rev = authx_epoch.install(
            auth, store=store, clock=SkewedClock(clock, index * SKEW), refresh_reuse_grace=dt.timedelta(seconds=GRACE)
        )
        transport = httpx.ASGITransport(app=refresh_app(auth, rev))
        http = await stack.enter_async_context(httpx.AsyncClient(transport=transport, base_url="http://app"))
        workers.append(Worker(auth, rev, http))
    return workers


def assert_session_ended(answers: list[Answer]) -> list[SessionTokens]:
    """Many callers with one token: one rotation, one grace answer, one declared reuse, the rest refused.

    Returns the two pairs (the rotation's and the grace's), which carry the same new generation.
    """
    pairs = pairs_of(answers)
    refused = [answer for answer in answers if not isinstance(answer, SessionTokens)]
    assert len(pairs) == 2, answers
    assert len({generation(pair.refresh_token) for pair in pairs}) == 1, "one generation rotated twice"
    assert set(refused) <= {"RefreshTokenReusedError", "RevokedTokenError"}, refused
    assert refused.count("RefreshTokenReusedError") == 1, "the reuse must be declared exactly once"
    return pairs


@pytest.mark.anyio
async def test_two_concurrent_refreshes_share_one_new_generation_and_a_third_ends_the_session(
    store: Store, clock: FakeClock
) -> None:
    callers = SERVICES * TASKS_PER_SERVICE
    async with AsyncExitStack() as stack:
        workers = await served(store, clock, stack)
        rev = workers[0].rev
        pair = await rev.create_token_pair("alice")
        sid, current = pair.session_id, pair.refresh_token
        seen = [generation(current)]
        for round_ in range(4):
            clock.advance(30.0)
            before = generation(current)
            # Two tabs at once, through two services: the rotation and the one grace answer.
            answers = await storm(workers[round_ % 2 :], [current] * 2)
            assert all(isinstance(answer, SessionTokens) for answer in answers), answers
            pairs = pairs_of(answers)
            assert {answer.session_id for answer in pairs} == {sid}
            handed = {generation(answer.refresh_token) for answer in pairs}
            handed |= {generation(answer.access_token) for answer in pairs}
            assert len(handed) == 1, f"one presented generation was rotated more than once: {sorted(handed)}"
            (after,) = handed
            assert after > before
            record = await rev.get_session_record(sid)
            assert record is not None
            assert (record.generation, record.previous, record.revoked, record.grace_used) == (
                after,
                before,
                False,
                True,
            )
            for answer in pairs:
                assert (await rev.check(answer.access_token)).accepted
            seen.append(after)
            evidence.add("rotation_concurrency.tasks", 2)
            evidence.add("rotation_concurrency.graces", 1)
            current = pairs[round_ % 2].refresh_token
        assert seen == sorted(set(seen))
        # Old-generation access tokens live on; the session never was revoked.
        assert (await rev.check(pair.access_token)).accepted
        # Now every caller at once: a third presentation of one token is a replay, within the grace too.
        clock.advance(30.0)
        pairs = assert_session_ended(await storm(workers, [current] * callers))
        record = await rev.get_session_record(sid)
        assert record is not None
        assert record.revoked
        for token in [pair.access_token, *(p.access_token for p in pairs), *(p.refresh_token for p in pairs)]:
            assert not (await rev.check(token)).accepted
        evidence.add("rotation_concurrency.tasks", callers)
        evidence.add("rotation_concurrency.reuses_caught", 1)
        evidence.add("rotation_concurrency.services", SERVICES)


@pytest.mark.anyio
async def test_concurrent_replays_after_the_grace_revoke_the_session_once(store: Store, clock: FakeClock) -> None:
    callers = SERVICES * TASKS_PER_SERVICE
    async with AsyncExitStack() as stack:
        workers = await served(store, clock, stack)
        rev = workers[0].rev
        victim = await rev.create_token_pair("alice")
        bystander = await rev.create_token_pair("alice")
        clock.advance(10.0)
        rotated = await rev.rotate_refresh_token(victim.refresh_token)
        clock.advance(GRACE + 1.0)
        # The thief replays the stolen token from every worker while the victim refreshes with
        # its current one, all at the same moment.
        tokens = [victim.refresh_token] * callers
        tokens[callers // 2] = rotated.refresh_token
        answers = await storm(workers, tokens)
        legit = answers.pop(callers // 2)
        assert not any(isinstance(answer, SessionTokens) for answer in answers), "a replay got a pair"
        assert set(answers) <= {"RefreshTokenReusedError", "RevokedTokenError"}, answers
        assert answers.count("RefreshTokenReusedError") == 1, "the reuse must be declared exactly once"
        # The victim's own refresh either won the race (and its pair dies with the session) or
        # found the session revoked; it is never taken for the replay.
        assert legit != "RefreshTokenReusedError"
        record = await rev.get_session_record(victim.session_id)
        assert record is not None
        assert record.revoked
        minted = [victim.access_token, victim.refresh_token, rotated.access_token, rotated.refresh_token]
        if isinstance(legit, SessionTokens):
            minted += [legit.access_token, legit.refresh_token]
            evidence.add("rotation_concurrency.victim_won_the_race")
        for token in minted:
            assert not (await rev.check(token)).accepted
        for token in minted[1::2]:
            with pytest.raises(RevokedTokenError) as refused:
                await rev.rotate_refresh_token(token)
            assert not isinstance(refused.value, RefreshTokenReusedError)
        # Another session of the same user is untouched.
        assert (await rev.check(bystander.access_token)).accepted
        assert isinstance(await rev.rotate_refresh_token(bystander.refresh_token), SessionTokens)
        evidence.add("rotation_concurrency.tasks", callers)
        evidence.add("rotation_concurrency.replays_refused", len(answers))
        evidence.add("rotation_concurrency.reuses_caught", answers.count("RefreshTokenReusedError"))


# -- several OS processes --------------------------------------------------------------------


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'shared.db'}"


@pytest.fixture
def redis_shared_url(redis_url: str) -> Iterator[str]:
    url = f"{redis_url}?prefix={quote(unique_prefix())}"
    yield url
    _wipe(url)


@pytest.fixture
def cluster_shared_url(redis_cluster: RedisCluster) -> Iterator[str]:
    url = f"{redis_cluster.url}?prefix={quote(unique_prefix())}"
    yield url
    _wipe(url)


def _wipe(url: str) -> None:
    store = open_store(url)
    store.sync.wipe()
    store.sync.close()


@pytest.fixture(
    params=[
        pytest.param("sqlite_url", marks=pytest.mark.sqlite),
        pytest.param("redis_shared_url", marks=pytest.mark.redis),
        pytest.param("cluster_shared_url", marks=pytest.mark.cluster),
    ]
)
def shared_url(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue(request.param)
    return url


class Processes:
    """``PROCESSES`` workers over one store URL, told together what to present and when."""

    def __init__(self, url: str) -> None:
        self.workers = [
            subprocess.Popen(
                [sys.executable, "-m", "tests.reliability.test_rotation_concurrency", url, str(index)],
                cwd=ROOT,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for index in range(PROCESSES)
        ]
        for worker in self.workers:
            assert worker.stdout is not None
            line = worker.stdout.readline()
            assert line.strip() == "ready", (line, worker.stderr.read() if worker.stderr else "")

    def storm(self, now: float, tokens: list[list[str]]) -> list[list[Answer]]:
        """Worker ``i`` presents ``tokens[i]`` at once, on its clock set to ``now`` (plus its skew)."""
        for worker, mine in zip(self.workers, tokens, strict=True):
            assert worker.stdin is not None
            worker.stdin.write(json.dumps({"now": now, "tokens": mine}) + "\n")
            worker.stdin.flush()
        answers = []
        for worker in self.workers:
            assert worker.stdout is not None
            line = worker.stdout.readline()
            assert line, worker.stderr.read() if worker.stderr else ""
            answers.append([SessionTokens.model_validate(a) if isinstance(a, dict) else a for a in json.loads(line)])
        return answers

    def close(self) -> None:
        """End every worker (their stdin closes: they finish and exit 0); kill one that hangs."""
        errors = []
        for worker in self.workers:
            try:
                _, err = worker.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                worker.kill()
                _, err = worker.communicate()
            if worker.returncode != 0:
                errors.append(err)
        assert not errors, errors


def test_refreshes_from_several_processes_rotate_once_and_replays_end_the_session(shared_url: str) -> None:
    clock = FakeClock()
    auth = make_auth()
    rev = authx_epoch.install(auth, store=shared_url, clock=clock, refresh_reuse_grace=dt.timedelta(seconds=GRACE))
    processes = Processes(shared_url)
    try:
        # Every process's callers refresh with the same token at once: one rotation, one grace
        # answer (same new generation), one declared reuse, and the session ends revoked.
        pair = rev.sync.create_token_pair("alice")
        sid, first = pair.session_id, generation(pair.refresh_token)
        clock.advance(10.0)
        answers = processes.storm(clock(), [[pair.refresh_token] * TASKS_PER_PROCESS] * PROCESSES)
        flat = [answer for mine in answers for answer in mine]
        pairs = assert_session_ended(flat)
        assert {answer.session_id for answer in pairs} == {sid}
        assert generation(pairs[0].refresh_token) > first
        record = rev.sync.get_session_record(sid)
        assert record is not None
        assert record.revoked
        minted = [pair.access_token, pair.refresh_token]
        minted += [token for answer in pairs for token in (answer.access_token, answer.refresh_token)]
        assert not any(rev.sync.check(token).accepted for token in minted)
        evidence.add("rotation_concurrency.process_tasks", len(flat))
        evidence.add("rotation_concurrency.reuses_caught", 1)

        # After the grace: every process replays a replaced token; one caller holds the current one.
        pair = rev.sync.create_token_pair("alice")
        sid = pair.session_id
        clock.advance(10.0)
        legit_token = rev.sync.rotate_refresh_token(pair.refresh_token).refresh_token
        clock.advance(GRACE + 1.0)
        tokens = [[pair.refresh_token] * TASKS_PER_PROCESS for _ in range(PROCESSES)]
        tokens[1][0] = legit_token
        answers = processes.storm(clock(), tokens)
        legit = answers[1].pop(0)
        replays = [answer for mine in answers for answer in mine]
        assert not pairs_of(replays), "a replay got a pair"
        assert set(replays) <= {"RefreshTokenReusedError", "RevokedTokenError"}, replays
        assert replays.count("RefreshTokenReusedError") == 1, "the reuse must be declared exactly once"
        assert legit != "RefreshTokenReusedError"
        record = rev.sync.get_session_record(sid)
        assert record is not None
        assert record.revoked
        minted = [pair.access_token, pair.refresh_token, legit_token]
        if isinstance(legit, SessionTokens):
            minted += [legit.access_token, legit.refresh_token]
        assert not any(rev.sync.check(token).accepted for token in minted)
        evidence.add("rotation_concurrency.process_tasks", len(replays) + 1)
        evidence.add("rotation_concurrency.replays_refused", len(replays))
        evidence.add("rotation_concurrency.reuses_caught", replays.count("RefreshTokenReusedError"))
        evidence.add("rotation_concurrency.processes", PROCESSES)
    finally:
        processes.close()
        rev.store.sync.close()


# -- the worker ------------------------------------------------------------------------------


def _answer(result: Answer) -> Any:
    return result.model_dump() if isinstance(result, SessionTokens) else result


async def _work(url: str, index: int) -> None:
    clock = FakeClock()
    store = open_store(url)
    auth = make_auth()
    rev = authx_epoch.install(
        auth, store=store, clock=SkewedClock(clock, index * SKEW), refresh_reuse_grace=dt.timedelta(seconds=GRACE)
    )
    worker = Worker(
        auth, rev, httpx.AsyncClient(transport=httpx.ASGITransport(app=refresh_app(auth, rev)), base_url="http://app")
    )
    loop = asyncio.get_running_loop()
    print("ready", flush=True)
    try:
        while line := await loop.run_in_executor(None, sys.stdin.readline):
            order = json.loads(line)
            clock.now = order["now"]
            answers = await storm([worker], order["tokens"])
            print(json.dumps([_answer(answer) for answer in answers]), flush=True)
    finally:
        await worker.http.aclose()
        await store.aio.close()
        store.sync.close()


if __name__ == "__main__":
    asyncio.run(_work(sys.argv[1], int(sys.argv[2])))

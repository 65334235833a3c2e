"""The local cache on a realistic spread of tokens: how many checks it answers from memory.

The per-check section presents one token again and again, which any cache answers from memory.
Real traffic is different: each user holds several tokens (devices, tabs, refreshed access
tokens), users are unevenly active, and each token comes back every few seconds, often to another
worker process. This section replays such traffic, in simulated time, through real AuthX
instances with the library installed on ``LocalCache`` over the bench's own Redis:

* ``users`` users with activity following a Zipf law of exponent ``skew`` (user ``i`` is
  ``1/i**skew`` as active as the first), ``tokens`` access tokens dealt round-robin among them;
* checks arrive as a Poisson process at ``rate`` per simulated second, each on a token of a user
  drawn by activity, the token drawn uniformly among that user's, on one of ``processes``
  independent caches (uvicorn workers) chosen at random;
* the clocks of the service and of the caches are one simulated clock, so a minute of traffic takes
  the seconds its checks cost and staleness is exact.

Hits are counted by the Redis server itself: every check script it executed (``INFO
commandstats``: a process's first read of a user, or a confirmation of what it holds) is a check
the caches did not answer; the two kinds are also counted apart, as the caches send them. Next
to the measured rate the section gives, from the same trace, the rate an ideal cache keyed per
token and one keyed per user would reach with the same staleness and no confirmations (an entry
read at ``t`` answers until ``t + staleness``), so what is measured can be read against them.

Meanwhile a third service, on the same Redis without a cache, bumps one of the 50 most active users
every 5 simulated seconds: no message reaches the caches, so only their confirmations (every
``staleness / 2``) and the staleness bound can reveal it. The section counts how often a bumped
user's token was still accepted, how long after its bump at most, and how often past the bound
(it must be never).
"""

from __future__ import annotations

import bisect
import collections
import itertools
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis

import authx_epoch
from bench.variants import make_auth, redis_store

#: The scripts a check runs on the server, whichever way it is sent.
_CHECK_COMMANDS = ("evalsha_ro", "eval_ro", "evalsha", "eval")


@dataclass(frozen=True)
class Spread:
    """The shape of the traffic (see the module docs)."""

    users: int = 500
    tokens: int = 2_000
    rate: float = 1_000.0
    skew: float = 1.0
    processes: int = 2
    seconds: float = 60.0
    staleness: float = 1.0
    seed: int = 5

    @property
    def checks(self) -> int:
        """How many checks the simulated run makes."""
        return int(self.rate * self.seconds)


@dataclass(frozen=True)
class Arrival:
    """One check of the trace: when, on which process, which user and which of the user's tokens."""

    at: float
    process: int
    user: int
    token: int


class _SimulatedClock:
    """One clock for the services and the caches; the trace moves it."""

    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


def trace(spread: Spread) -> list[Arrival]:
    """The checks of a run, in time order (deterministic for a given ``seed``)."""
    rng = random.Random(spread.seed)
    weights = [1.0 / (rank + 1) ** spread.skew for rank in range(spread.users)]
    cumulative = list(itertools.accumulate(weights))
    tokens_of = [range(user, spread.tokens, spread.users) for user in range(spread.users)]
    arrivals = []
    at = 0.0
    for _ in range(spread.checks):
        at += rng.expovariate(spread.rate)
        user = min(bisect.bisect_left(cumulative, rng.random() * cumulative[-1]), spread.users - 1)
        owned = tokens_of[user]
        token = owned[rng.randrange(len(owned))] if len(owned) else user
        arrivals.append(Arrival(at, rng.randrange(spread.processes), user, token))
    return arrivals


def ideal_hit_rate(arrivals: Sequence[Arrival], staleness: float, per: str) -> float:
    """The share of checks an ideal cache keyed ``per`` token or user would answer from memory."""
    confirmed: dict[tuple[int, int], float] = {}
    hits = 0
    for arrival in arrivals:
        key = (arrival.process, arrival.token if per == "token" else arrival.user)
        read_at = confirmed.get(key)
        if read_at is not None and arrival.at - read_at < staleness:
            hits += 1
        else:
            confirmed[key] = arrival.at
    return hits / len(arrivals) if arrivals else 0.0


def _executed_checks(client: redis.Redis) -> int:
    stats = client.info("commandstats")
    return sum(int(stats.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in _CHECK_COMMANDS)


def _bump_plan(spread: Spread) -> list[tuple[float, int]]:
    """When the writer behind the caches' back bumps whom: every 5 s one of the 50 most active users."""
    rng = random.Random(spread.seed + 1)
    users = min(50, spread.users)
    return [(float(at), rng.randrange(users)) for at in range(5, int(spread.seconds), 5)]


def _count_scripts(store: Any, counts: collections.Counter[str]) -> None:
    """Count the scripts ``store`` sends on the asyncio side, by name (its I/O is otherwise untouched)."""
    execute = store.execute_async

    async def counted(request: Any) -> Any:
        call = getattr(request, "call", None)
        if call is not None:
            counts[call.script.name] += 1
        return await execute(request)

    store.execute_async = counted


async def run(redis_url: str, client: redis.Redis, spread: Spread) -> dict[str, Any]:
    """Replay ``spread``'s traffic through ``spread.processes`` cached services; the hit rates."""
    from authx_epoch.stores.cache import LocalCache  # optional, like the Redis store

    clock = _SimulatedClock(time.time())
    stores = []
    auths = []
    scripts: collections.Counter[str] = collections.Counter()
    for _ in range(spread.processes):
        inner = redis_store(redis_url, "bench-spread")
        _count_scripts(inner, scripts)
        store = LocalCache(inner, staleness=spread.staleness, clock=clock)
        auth = make_auth()
        authx_epoch.install(auth, store=store, clock=clock)
        stores.append(store)
        auths.append(auth)
    # A writer that bypasses the caches (no message on the channel): only confirmations and the
    # staleness bound can reveal its bumps to the two processes.
    behind_auth = make_auth()
    behind = authx_epoch.install(behind_auth, store=redis_store(redis_url, "bench-spread"), clock=clock)
    try:
        mint = auths[0].create_access_token
        tokens = [mint(uid=f"spread-user-{index % spread.users}") for index in range(spread.tokens)]
        arrivals = trace(spread)
        bumps = _bump_plan(spread)
        bumped: dict[int, float] = {}
        start = clock.now
        client.config_resetstat()
        refused = late = 0
        lag: list[float] = []
        for arrival in arrivals:
            clock.now = start + arrival.at
            while bumps and bumps[0][0] <= arrival.at:
                at, user = bumps.pop(0)
                clock.now = start + at
                behind.sync.bump_user_epoch(f"spread-user-{user}", reason="bench: behind the caches' back")
                bumped[user] = at
                clock.now = start + arrival.at
            was_refused = await auths[arrival.process].is_token_in_blocklist(tokens[arrival.token])
            refused += was_refused
            since = arrival.at - bumped[arrival.user] if arrival.user in bumped else None
            if since is not None and not was_refused:
                lag.append(since)
                late += since >= spread.staleness
        # The bumps' own scripts are writes, not checks.
        executed = _executed_checks(client) - len(bumped)
    finally:
        for store in stores:
            await store.aio.close()
        await behind.store.aio.close()
    return {
        "spread": spread.__dict__,
        "checks": len(arrivals),
        "refused": refused,
        "store_reads": executed,
        "hit_rate": 1 - executed / len(arrivals),
        "user_reads": scripts["view"],
        "confirmations": scripts["versions"],
        "bumps_behind": len(bumped),
        "accepted_after_bump": len(lag),
        "longest_acceptance_after_bump": max(lag, default=0.0),
        "accepted_past_staleness": late,
        "ideal_per_token": ideal_hit_rate(arrivals, spread.staleness, "token"),
        "ideal_per_user": ideal_hit_rate(arrivals, spread.staleness, "user"),
    }

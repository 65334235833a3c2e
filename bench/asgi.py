"""Per request, in-process: a real FastAPI app driven through ``httpx.ASGITransport``.

Each variant serves the same protected route; requests run one at a time, then 32 at a time.
Throughput is reported as a ratio to the floor measured in the same round.

The variants take turns in small blocks (16 requests one at a time, or one request in each of
32 concurrent tasks), in a rotating order, and each round adds up the time every variant spent.
A slow moment of the machine (another process, a garbage collection, a frequency change) then
falls on every variant alike instead of on whichever ran its whole batch at that moment: batch by
batch, the same code measured 0.74 to 1.05 of the floor; block by block its rounds stay within a
few percent.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import httpx

from bench.stats import in_turns, ratios, summary
from bench.variants import Built

CONCURRENCY = 32
#: Requests one variant sends one at a time before the next variant takes its turn.
BLOCK = 16


async def verify(built: Built, tokens: list[str]) -> None:
    """Prove the variant checks: its token is accepted, and (unless it is the floor) the revoked one refused."""
    async with _client(built) as client:
        ok = await client.get("/protected", headers={"Authorization": f"Bearer {tokens[0]}"})
        if ok.status_code != 200:
            raise RuntimeError(f"{built.variant.name}: the accepted token got {ok.status_code}: {ok.text}")
        if built.variant.name != "floor":
            revoked = await client.get("/protected", headers={"Authorization": f"Bearer {tokens[1]}"})
            if revoked.status_code != 401:
                raise RuntimeError(f"{built.variant.name}: the revoked token got {revoked.status_code}")


def _client(built: Built) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=built.app), base_url="http://bench")


async def _get(client: httpx.AsyncClient, headers: dict[str, str]) -> None:
    response = await client.get("/protected", headers=headers)
    if response.status_code != 200:
        raise RuntimeError(f"unexpected status {response.status_code}")


async def _one_at_a_time(client: httpx.AsyncClient, headers: dict[str, str]) -> None:
    for _ in range(BLOCK):
        await _get(client, headers)


async def _all_at_once(client: httpx.AsyncClient, headers: dict[str, str]) -> None:
    await asyncio.gather(*(_get(client, headers) for _ in range(CONCURRENCY)))


async def _round(
    block: Callable[[httpx.AsyncClient, dict[str, str]], Awaitable[None]],
    requests: int,
    clients: dict[str, httpx.AsyncClient],
    headers: dict[str, dict[str, str]],
    count: int,
) -> dict[str, float]:
    """Requests per second of every variant over about ``count`` requests each, ``requests`` per turn."""
    names = list(clients)
    turns = -(-count // requests)
    spent = await in_turns(names, turns, lambda name: block(clients[name], headers[name]))
    return {name: turns * requests / seconds for name, seconds in zip(names, spent, strict=True)}


async def run(
    built_variants: Sequence[Built], tokens: dict[str, list[str]], rounds: int, quick: bool
) -> dict[str, Any]:
    """Requests per second for every variant, sequential and 32 concurrent, in interleaved rounds."""
    count = 64 if quick else 640
    names = [built.variant.name for built in built_variants]
    sequential: dict[str, list[float]] = {name: [] for name in names}
    concurrent: dict[str, list[float]] = {name: [] for name in names}
    clients = {built.variant.name: _client(built) for built in built_variants}
    headers = {name: {"Authorization": f"Bearer {tokens[name][0]}"} for name in names}
    try:
        for name in names:
            await _one_at_a_time(clients[name], headers[name])  # warm-up
        for _ in range(rounds):
            gc.collect()
            for name, rps in (await _round(_one_at_a_time, BLOCK, clients, headers, count)).items():
                sequential[name].append(rps)
            for name, rps in (await _round(_all_at_once, CONCURRENCY, clients, headers, count)).items():
                concurrent[name].append(rps)
    finally:
        for client in clients.values():
            await client.aclose()
    floor_seq, floor_conc = sequential.get("floor", []), concurrent.get("floor", [])
    return {
        name: {
            "sequential_rps": summary(sequential[name]),
            "concurrent_rps": summary(concurrent[name]),
            "sequential_ratio": summary(ratios(sequential[name], floor_seq)) if floor_seq else None,
            "concurrent_ratio": summary(ratios(concurrent[name], floor_conc)) if floor_conc else None,
        }
        for name in names
    }

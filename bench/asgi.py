"""Per request, in-process: a real FastAPI app driven through ``httpx.ASGITransport``.

Each variant serves the same protected route; requests run one at a time, then 32 at a time.
Throughput is reported as a ratio to the floor measured in the same round.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import httpx

from bench.stats import ratios, summary
from bench.variants import Built

CONCURRENCY = 32


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


async def _sequential(client: httpx.AsyncClient, headers: dict[str, str], count: int) -> float:
    started = time.perf_counter()
    for _ in range(count):
        response = await client.get("/protected", headers=headers)
        if response.status_code != 200:
            raise RuntimeError(f"unexpected status {response.status_code}")
    return count / (time.perf_counter() - started)


async def _concurrent(client: httpx.AsyncClient, headers: dict[str, str], count: int) -> float:
    per_task = max(1, count // CONCURRENCY)

    async def task() -> None:
        for _ in range(per_task):
            response = await client.get("/protected", headers=headers)
            if response.status_code != 200:
                raise RuntimeError(f"unexpected status {response.status_code}")

    started = time.perf_counter()
    await asyncio.gather(*(task() for _ in range(CONCURRENCY)))
    return per_task * CONCURRENCY / (time.perf_counter() - started)


async def run(
    built_variants: Sequence[Built], tokens: dict[str, list[str]], rounds: int, quick: bool
) -> dict[str, Any]:
    """Requests per second for every variant, sequential and 32 concurrent, in interleaved rounds."""
    count = 64 if quick else 640
    names = [built.variant.name for built in built_variants]
    sequential: dict[str, list[float]] = {name: [] for name in names}
    concurrent: dict[str, list[float]] = {name: [] for name in names}
    clients = {built.variant.name: _client(built) for built in built_variants}
    try:
        for built in built_variants:
            headers = {"Authorization": f"Bearer {tokens[built.variant.name][0]}"}
            await _sequential(clients[built.variant.name], headers, 8)  # warm-up
        for round_index in range(rounds):
            shift = round_index % len(built_variants)
            for built in [*built_variants[shift:], *built_variants[:shift]]:
                name = built.variant.name
                headers = {"Authorization": f"Bearer {tokens[name][0]}"}
                sequential[name].append(await _sequential(clients[name], headers, count))
                concurrent[name].append(await _concurrent(clients[name], headers, count))
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

"""Redis commands per check, counted by the server itself (``CONFIG RESETSTAT`` then ``INFO commandstats``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import redis

from bench.variants import Built

#: The bench's own bookkeeping, not the check's.
_IGNORED = ("cmdstat_config", "cmdstat_info")


def _counts(clients: Sequence[redis.Redis]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for client in clients:
        for name, stats in client.info("commandstats").items():
            if not name.startswith(_IGNORED):
                command = name.removeprefix("cmdstat_")
                counts[command] = counts.get(command, 0) + int(stats["calls"])
    return counts


async def run(
    built_variants: Sequence[Built],
    tokens: Mapping[str, list[str]],
    nodes: Mapping[str, Sequence[redis.Redis]],
    checks: int,
) -> dict[str, Any]:
    """Count the commands ``checks`` checks send, for every variant that talks to Redis."""
    results: dict[str, Any] = {}
    for built in built_variants:
        clients = nodes.get(built.variant.name)
        if not clients:
            continue
        token = tokens[built.variant.name][0]
        for _ in range(5):  # connections, script loading and cluster discovery happen before counting
            await built.auth.is_token_in_blocklist(token)
        for client in clients:
            client.config_resetstat()
        for _ in range(checks):
            await built.auth.is_token_in_blocklist(token)
        counts = _counts(clients)
        results[built.variant.name] = {
            "checks": checks,
            "commands_per_check": sum(counts.values()) / checks,
            "by_command": counts,
        }
    return results

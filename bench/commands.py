"""Redis commands per check, counted by the server itself.

Two counts: the commands the client *sent* (read from ``MONITOR``, leaving out the commands a Lua
script runs inside the server; one sent command is one round trip unless pipelined), and every
command the server *executed*, scripts' inner calls included (``CONFIG RESETSTAT`` then
``INFO commandstats``).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import redis

from bench.variants import Built

#: The bench's own bookkeeping, not the check's.
_IGNORED = ("cmdstat_config", "cmdstat_info", "cmdstat_echo")
_END = "authx-epoch-bench:end"


def _executed(clients: Sequence[redis.Redis]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for client in clients:
        for name, stats in client.info("commandstats").items():
            if not name.startswith(_IGNORED):
                command = name.removeprefix("cmdstat_")
                counts[command] = counts.get(command, 0) + int(stats["calls"])
    return counts


def _twin(client: redis.Redis) -> redis.Redis:
    """A second client of the same node (MONITOR takes a connection for itself)."""
    settings = client.connection_pool.connection_kwargs
    return redis.Redis(host=settings.get("host", "127.0.0.1"), port=settings.get("port", 6379))


class _Monitor(threading.Thread):
    """Counts the commands clients send to one node, until it sees the end marker."""

    def __init__(self, client: redis.Redis) -> None:
        super().__init__(daemon=True)
        self.client = client
        self.sent: dict[str, int] = {}
        self.ready = threading.Event()

    def run(self) -> None:
        with self.client.monitor() as monitor:  # type: ignore[no-untyped-call]
            self.ready.set()
            while True:
                command = monitor.next_command()
                text = str(command.get("command", ""))
                if _END in text:
                    return
                if command.get("client_type") == "lua":
                    continue
                name = text.split(" ", 1)[0].lower()
                self.sent[name] = self.sent.get(name, 0) + 1


#: Checks in flight at once when counting round trips.
CONCURRENCY = 32


def _reads(clients: Sequence[redis.Redis]) -> int:
    return sum(int(client.info("stats")["total_reads_processed"]) for client in clients)


async def _round_trips(built: Built, token: str, clients: Sequence[redis.Redis], checks: int) -> dict[str, Any]:
    """How many checks share a round trip with ``CONCURRENCY`` in flight, counted by the server.

    Redis counts every read of a client's socket (``total_reads_processed``): one per round trip,
    whatever number of commands the read carried. Each ``INFO`` is one read of its own.
    """
    before = _reads(clients)
    done = 0
    while done < checks:
        batch = min(CONCURRENCY, checks - done)
        await asyncio.gather(*(built.auth.is_token_in_blocklist(token) for _ in range(batch)))
        done += batch
    reads = _reads(clients) - before - len(clients)
    return {"checks": checks, "in_flight": CONCURRENCY, "reads": reads, "checks_per_round_trip": checks / max(reads, 1)}


async def run(
    built_variants: Sequence[Built],
    tokens: Mapping[str, list[str]],
    nodes: Mapping[str, Sequence[redis.Redis]],
    checks: int,
) -> dict[str, Any]:
    """Count the commands ``checks`` checks send and cause, for every variant that talks to Redis."""
    results: dict[str, Any] = {}
    for built in built_variants:
        clients = nodes.get(built.variant.name)
        if not clients:
            continue
        token = tokens[built.variant.name][0]
        for _ in range(5):  # connections, script loading and cluster discovery happen before counting
            await built.auth.is_token_in_blocklist(token)
        for client in clients:
            client.ping()  # its connection handshake must not be counted
        monitors = [_Monitor(_twin(client)) for client in clients]
        for monitor in monitors:
            monitor.start()
            monitor.ready.wait(5)
        for client in clients:
            client.config_resetstat()
        for _ in range(checks):
            await built.auth.is_token_in_blocklist(token)
        executed = _executed(clients)
        for client in clients:
            client.echo(_END)
        sent: dict[str, int] = {}
        for monitor in monitors:
            monitor.join(10)
            for name, count in monitor.sent.items():
                if name not in ("config", "info", "echo", "ping"):
                    sent[name] = sent.get(name, 0) + count
        results[built.variant.name] = {
            "concurrent": await _round_trips(built, token, clients, checks),
            "checks": checks,
            "commands_per_check": sum(sent.values()) / checks,
            "sent": sent,
            "executed_per_check": sum(executed.values()) / checks,
            "by_command": executed,
        }
    return results

"""What a Redis flow asks of Redis (``Eval``, ``Command``, ``Together``, ``ScanBatch``), and running a script.

A store operation is a flow that yields these requests; ``RedisStore.execute`` and
``RedisStore.execute_async`` do them with the blocking or the asyncio client.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Optional

from redis.exceptions import NoScriptError, ResponseError

from authx_epoch.stores.redis.scripts import Call


@dataclass(frozen=True)
class Eval:
    """Run a script (read-only ones with ``EVALSHA_RO`` where the server has it)."""

    call: Call
    read_only: bool = False


@dataclass(frozen=True)
class Command:
    """One plain command, by its redis-py method name."""

    name: str
    args: tuple[Any, ...]


@dataclass(frozen=True)
class Together:
    """Independent requests: pipelined (blocking side) or sent concurrently (asyncio side, on Cluster)."""

    requests: tuple[Any, ...]


@dataclass
class ScanBatch:
    """The next batch of this namespace's keys (administration: the blocking side only); ``[]`` at the end."""

    pattern: bytes
    found: Optional[Iterator[bytes]] = None


def _no_read_only_scripts(exc: ResponseError) -> bool:
    # Redis before 7.0 has no EVALSHA_RO; the same script then runs with EVALSHA.
    return "unknown command" in str(exc).lower()


def evalsha(client: Any, shared: Any, request: Eval) -> Any:
    """Call a script by digest on the blocking client, loading it when the server lost it."""
    call = request.call
    if request.read_only and shared.read_only_scripts:
        try:
            return client.evalsha_ro(call.script.sha, len(call.keys), *call.keys, *call.args)
        except NoScriptError:
            return client.eval_ro(call.script.source, len(call.keys), *call.keys, *call.args)
        except ResponseError as exc:
            if not _no_read_only_scripts(exc):
                raise
            shared.read_only_scripts = False
    try:
        return client.evalsha(call.script.sha, len(call.keys), *call.keys, *call.args)
    except NoScriptError:
        # Scripts are cached by the server, and lost on restart or SCRIPT FLUSH.
        return client.eval(call.script.source, len(call.keys), *call.keys, *call.args)


async def evalsha_async(client: Any, shared: Any, request: Eval) -> Any:
    """``evalsha`` on the asyncio client."""
    call = request.call
    if request.read_only and shared.read_only_scripts:
        try:
            return await client.evalsha_ro(call.script.sha, len(call.keys), *call.keys, *call.args)
        except NoScriptError:
            return await client.eval_ro(call.script.source, len(call.keys), *call.keys, *call.args)
        except ResponseError as exc:
            if not _no_read_only_scripts(exc):
                raise
            shared.read_only_scripts = False
    try:
        return await client.evalsha(call.script.sha, len(call.keys), *call.keys, *call.args)
    except NoScriptError:
        return await client.eval(call.script.source, len(call.keys), *call.keys, *call.args)

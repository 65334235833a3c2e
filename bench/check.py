"""Per check: microseconds per blocklist call, next to PyJWT's own work on the same token.

Three figures per variant: through AuthX (``await auth.is_token_in_blocklist(token)``, what a request
pays), the registered callback alone, and AuthX's ``verify_token`` (the optional-auth path, which
authx-epoch makes ask the store too; it is sync, so on a network store it blocks for one round
trip). The references time PyJWT's HS256 verify-and-decode and its decode without verification of
the same token, and the claim reader on a memo miss.

Within a round the variants take turns in blocks (a twentieth of a variant's calls per turn, in
a rotating order), and each figure adds up the blocks' time: a slow moment of the machine or of
the loopback falls on every variant alike, so two variants' figures of one round compare.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import jwt
from authx.schema import RequestToken

from authx_epoch.claims import ClaimReader
from bench.stats import in_turns, summary
from bench.variants import SECRET, Built

#: Turns each variant takes per round and figure.
TURNS = 20


def _batch_size(built: Built, quick: bool) -> int:
    network = built.variant.needs != "" or built.variant.name == "seed-redis"
    if quick:
        return 20 if network else 200
    return 500 if network else 5_000


async def _authx_calls(built: Built, token: str, count: int) -> None:
    check = built.auth.is_token_in_blocklist
    for _ in range(count):
        await check(token)


async def _callback_calls(built: Built, token: str, count: int) -> None:
    callback = built.auth.callback_is_token_in_blocklist
    if callback is None:
        return
    if inspect.iscoroutinefunction(callback):
        for _ in range(count):
            await callback(token)
    else:
        for _ in range(count):
            callback(token)


async def _verify_calls(built: Built, token: str, count: int) -> None:
    request_token = RequestToken(token=token, location="headers")
    verify = built.auth.verify_token
    for _ in range(count):
        verify(request_token)


def _time_sync(func: Callable[[], Any], count: int) -> float:
    started = time.perf_counter()
    for _ in range(count):
        func()
    return time.perf_counter() - started


Calls = Callable[[Built, str, int], Awaitable[None]]


async def _round(
    calls_of: Calls, built_variants: Sequence[Built], tokens: dict[str, list[str]], quick: bool
) -> dict[str, float]:
    """Microseconds per call of every variant, its calls sent in turns of a twentieth each."""
    block = [max(1, _batch_size(built, quick) // TURNS) for built in built_variants]
    calls = {built.variant.name: size for built, size in zip(built_variants, block, strict=True)}

    async def turn(built: Built) -> None:
        name = built.variant.name
        await calls_of(built, tokens[name][0], calls[name])

    spent = await in_turns(built_variants, TURNS, turn)
    return {
        built.variant.name: seconds / (size * TURNS) * 1e6
        for built, size, seconds in zip(built_variants, block, spent, strict=True)
    }


async def run(
    built_variants: Sequence[Built], tokens: dict[str, list[str]], rounds: int, quick: bool
) -> dict[str, Any]:
    """Time every variant and the references in ``rounds`` interleaved rounds."""
    authx_us: dict[str, list[float]] = {b.variant.name: [] for b in built_variants}
    callback_us: dict[str, list[float]] = {b.variant.name: [] for b in built_variants}
    verify_us: dict[str, list[float]] = {b.variant.name: [] for b in built_variants}
    reference_token = tokens["epoch-memory"][0] if "epoch-memory" in tokens else tokens["floor"][0]
    cold_reader = ClaimReader(memo_size=0)
    references: dict[str, Callable[[], Any]] = {
        "pyjwt_hs256_verify": lambda: jwt.decode(reference_token, SECRET, algorithms=["HS256"]),
        "pyjwt_unverified_decode": lambda: jwt.decode(reference_token, options={"verify_signature": False}),
        "claim_read_memo_miss": lambda: cold_reader.read(reference_token),
    }
    reference_us: dict[str, list[float]] = {name: [] for name in references}
    for _ in range(rounds):
        for figures, calls in ((authx_us, _authx_calls), (callback_us, _callback_calls), (verify_us, _verify_calls)):
            for name, micros in (await _round(calls, built_variants, tokens, quick)).items():
                figures[name].append(micros)
        count = 200 if quick else 5_000
        for name, func in references.items():
            reference_us[name].append(_time_sync(func, count) / count * 1e6)
    return {
        "variants": {
            name: {
                "authx_us": summary(authx_us[name]),
                "callback_us": summary(callback_us[name]),
                "verify_token_us": summary(verify_us[name]),
            }
            for name in authx_us
        },
        "references": {name: summary(values) for name, values in reference_us.items()},
    }

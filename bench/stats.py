"""Summaries of repeated measurements: median with min and max, and ratios taken round by round."""

from __future__ import annotations

import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

_T = TypeVar("_T")


def summary(values: Sequence[float]) -> dict[str, Any]:
    """Median, min and max of ``values``, and the values themselves."""
    if not values:
        return {"median": None, "min": None, "max": None, "values": []}
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "values": list(values),
    }


def ratios(variant: Sequence[float], floor: Sequence[float]) -> list[float]:
    """Per-round ratios ``variant / floor`` (rounds are interleaved, so each pair saw the same machine)."""
    return [value / base for value, base in zip(variant, floor, strict=True) if base]


async def in_turns(items: Sequence[_T], turns: int, block: Callable[[_T], Awaitable[Any]]) -> list[float]:
    """Seconds each item's ``block`` took in all, over ``turns`` turns in a rotating order.

    The items take turns block by block rather than each running all of its blocks at once, so a
    slow moment of the machine (another process, a garbage collection, the loopback) falls on every
    item alike and their totals compare.
    """
    spent = [0.0] * len(items)
    order = list(range(len(items)))
    for turn in range(turns):
        shift = turn % len(order)
        for index in [*order[shift:], *order[:shift]]:
            started = time.perf_counter()
            await block(items[index])
            spent[index] += time.perf_counter() - started
    return spent


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """The ``fraction`` percentile of already sorted values (nearest rank)."""
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(fraction * len(sorted_values)) - 1))
    return sorted_values[index]

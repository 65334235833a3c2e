"""Summaries of repeated measurements: median with min and max, and ratios taken round by round."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any


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


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """The ``fraction`` percentile of already sorted values (nearest rank)."""
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(fraction * len(sorted_values)) - 1))
    return sorted_values[index]

"""Counts the property and reliability tests report, so a run can quote what it proved.

Tests add to named counters; at the end of the run the totals are printed in the terminal
summary and written as JSON to ``$AUTHX_EPOCH_EVIDENCE`` (default: a file in the temp dir).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

COUNTS: Counter[str] = Counter()
_REPORTED: list[bool] = []


def add(key: str, amount: int = 1) -> None:
    """Add ``amount`` to the counter ``key`` (e.g. ``model.examples.sqlite``)."""
    COUNTS[key] += amount


def evidence_path() -> Path:
    """Where the JSON summary is written."""
    default = Path(tempfile.gettempdir()) / "authx-epoch-evidence.json"
    return Path(os.environ.get("AUTHX_EPOCH_EVIDENCE", default))


def report(terminalreporter: Any) -> None:
    """Print the counters once per run and write them as JSON."""
    if _REPORTED or not COUNTS:
        return
    _REPORTED.append(True)
    path = evidence_path()
    path.write_text(json.dumps(dict(sorted(COUNTS.items())), indent=2) + "\n")
    terminalreporter.section("authx-epoch evidence")
    for key, value in sorted(COUNTS.items()):
        terminalreporter.write_line(f"{key}: {value}")
    terminalreporter.write_line(f"(written to {path})")

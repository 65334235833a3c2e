"""Print the evidence counters (examples, inputs, faults) at the end of the run."""

from __future__ import annotations

from typing import Any

from tests.properties import evidence


def pytest_terminal_summary(terminalreporter: Any) -> None:
    evidence.report(terminalreporter)

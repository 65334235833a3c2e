"""AuthX's own test suite passes and fails exactly the same with authx-epoch on every AuthX instance.

The suite comes from the sdist of the installed AuthX (downloaded once, then cached under the
virtualenv) and runs twice in subprocesses under its own pytest configuration; see runner.py.
A difference fails this test unless ``runner.ALLOWED`` lists it with the behaviour change that
explains it. ``python -m tests.authx_suite`` prints the same comparison.
"""

from pathlib import Path

import pytest

from tests.authx_suite.runner import ALLOWED, differences, run_both, summary

pytestmark = pytest.mark.slow


def test_authx_suite_outcomes_are_unchanged_by_the_library(tmp_path: Path) -> None:
    without, with_library = run_both(tmp_path)
    found = differences(without, with_library)
    report = summary(without, with_library, found)
    # A vacuous comparison proves nothing: both runs must have collected and run AuthX's tests.
    assert not without.collection_errors(), report
    assert not with_library.collection_errors(), report
    assert without.counts()["passed"] >= 400, report
    # The library was really there, and really asked.
    assert with_library.installs > 0, report
    assert sum(with_library.decisions.values()) > 0, report
    assert [d.nodeid for d in found if d.allowed is None] == [], report
    assert sorted(ALLOWED) == sorted(d.nodeid for d in found), report  # no stale entries

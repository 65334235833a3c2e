"""A pytest plugin for AuthX's own test suite: authx-epoch on every AuthX instance, outcomes to JSON.

Loaded into AuthX's run with ``-p authx_suite_plugin`` (its folder on ``PYTHONPATH``), never into
ours: AuthX's tests are a top-level package named ``tests`` too, so this module imports nothing
from this repository's ``tests``.

``--authx-suite-report=PATH`` writes every test's outcome to PATH (both runs load the plugin for it).

``--authx-epoch-install`` wraps ``AuthX.__init__`` so that every instance gets
``authx_epoch.install(auth, store=...)`` right after construction, with the library's defaults
except for the two settings below. The store is a fresh in-memory one per test, shared by the
instances that test creates, as the deployments of one app share theirs: AuthX's key-rotation
tests mint with the old configuration's instance and verify with the new one's, and on two
stores the second would refuse the token as ``lost_state`` (right for two apps, not what those
tests model). An instance made outside any test gets a store of its own.

AuthX's tests may mint tokens the library never stamped (with ``create_token()`` directly). Without
a migration window the library refuses those as ``unstamped``, by design. The run opens the window
the library offers for an app adopting it while older tokens are live, through its public API:
``accept_unstamped_until`` far in the future, and a global record imported before ``install()``
whose set-up time lies after every token the tests mint (the window accepts only tokens minted
before the store was set up, and only while neither the user's nor the global epoch has moved).
Stamped tokens are checked exactly as in any app. ``--authx-epoch-no-window`` runs without it.

The report also says, per test, how many instances got the library, how many checks it made and
on how many instances the test replaced the library's blocklist callback with its own (AuthX has
one slot; a test that sets its own callback runs without the library's check on that instance).
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import time
from collections import Counter
from collections.abc import Generator
from pathlib import Path
from typing import Any, Optional

import pytest
from authx import AuthX

import authx_epoch
from authx_epoch.records import SnapshotEntry

#: The migration window stays open for the whole run.
WINDOW_END = dt.datetime(2999, 1, 1, tzinfo=dt.timezone.utc)
#: The global record's set-up time: after any token the tests mint (freezegun included).
SET_UP_AT = WINDOW_END.timestamp()
#: Any valid epoch: tokens are stamped with whatever the record holds.
GLOBAL_EPOCH = 1

_original_init = AuthX.__init__


class _Run:
    """What the installing side knows: settings, the current test's store and instances, counts."""

    def __init__(self) -> None:
        self.window: Optional[dt.datetime] = WINDOW_END
        self.store: Optional[authx_epoch.MemoryStore] = None
        #: The current test's instances, each with the callback install() registered.
        self.instances: list[tuple[AuthX[Any], Any]] = []
        self.checks = 0
        #: How many checks ended with each reason, over the run.
        self.decisions: Counter[str] = Counter()
        #: Per test: instances, checks, callbacks replaced.
        self.coverage: dict[str, dict[str, int]] = {}
        self.installs = 0


_run = _Run()


def fresh_store() -> authx_epoch.MemoryStore:
    """A memory store whose set-up time follows every token minted in the run (see the module doc)."""
    store = authx_epoch.MemoryStore()
    record = authx_epoch.EpochRecord(epoch=GLOBAL_EPOCH, created_at=SET_UP_AT)
    store.sync.import_entries([SnapshotEntry("global", "", record=record)], time.time())
    return store


def _count(event: authx_epoch.DecisionEvent) -> None:
    _run.checks += 1
    _run.decisions[event.decision.reason.value + ("" if event.decision.accepted else " (refused)")] += 1


@functools.wraps(_original_init)
def _init_and_install(self: AuthX[Any], *args: Any, **kwargs: Any) -> None:
    _original_init(self, *args, **kwargs)
    store = _run.store if _run.store is not None else fresh_store()
    # The instances of one test are the deployments of one app: they share its namespace on purpose
    # (by login type, as install() would derive it, but named, so that the sharing is allowed).
    namespace = self.login_type or ""
    authx_epoch.install(self, store=store, accept_unstamped_until=_run.window, on_decision=_count, namespace=namespace)
    _run.installs += 1
    if _run.store is not None:
        _run.instances.append((self, self.callback_is_token_in_blocklist))


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("authx-epoch suite")
    group.addoption("--authx-suite-report", metavar="PATH", help="write every test's outcome to PATH as JSON")
    group.addoption("--authx-epoch-install", action="store_true", help="install authx-epoch on every AuthX instance")
    group.addoption(
        "--authx-epoch-no-window",
        action="store_true",
        help="no migration window: refuse unstamped tokens, as an app without accept_unstamped_until does",
    )


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("--authx-epoch-no-window"):
        _run.window = None
    if config.getoption("--authx-epoch-install"):
        AuthX.__init__ = _init_and_install  # type: ignore[method-assign]
    path = config.getoption("--authx-suite-report")
    if path:
        config.pluginmanager.register(_Recorder(Path(path)), "authx-suite-recorder")


def pytest_unconfigure(config: pytest.Config) -> None:
    AuthX.__init__ = _original_init  # type: ignore[method-assign]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: Optional[pytest.Item]) -> Generator[None, object, object]:
    _run.store, _run.instances, checks = fresh_store(), [], _run.checks
    try:
        return (yield)
    finally:
        if _run.instances:
            replaced = sum(1 for auth, ours in _run.instances if auth.callback_is_token_in_blocklist is not ours)
            _run.coverage[item.nodeid] = {
                "instances": len(_run.instances),
                "checks": _run.checks - checks,
                "callbacks_replaced": replaced,
            }
        _run.store, _run.instances = None, []


class _Recorder:
    """Collects one outcome per test (the worst of its phases) and the collection errors."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.outcomes: dict[str, dict[str, str]] = {}

    def _set(self, nodeid: str, outcome: str, report: Any) -> None:
        lines = (report.longreprtext or "").strip().splitlines() if outcome in ("failed", "error") else []
        self.outcomes[nodeid] = {"outcome": outcome, "message": lines[-1][:300] if lines else ""}

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            self._set(f"collect::{report.nodeid}", "error", report)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        previous = self.outcomes.get(report.nodeid, {}).get("outcome")
        if report.when == "call":
            outcome: str = report.outcome
            if hasattr(report, "wasxfail"):
                outcome = "xfailed" if report.skipped else "xpassed"
            if previous != "error":
                self._set(report.nodeid, outcome, report)
        elif report.failed:  # setup or teardown
            self._set(report.nodeid, "error", report)
        elif report.skipped and previous is None:  # skipped in setup (skip marks, fixtures)
            self._set(report.nodeid, "skipped", report)

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        data = {
            "exitstatus": int(exitstatus),
            "installs": _run.installs,
            "window": _run.window is not None,
            "decisions": dict(_run.decisions),
            "coverage": _run.coverage,
            "tests": self.outcomes,
        }
        self.path.write_text(json.dumps(data, indent=1, sort_keys=True))

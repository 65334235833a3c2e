"""Run AuthX's own test suite without and with authx-epoch, and compare the outcomes test by test.

The suite is the one in the sdist of the installed AuthX version, fetched once from the package
index with pip and kept under the virtualenv (``<venv>/authx-suite/authx-<version>``;
``AUTHX_SUITE_CACHE`` chooses another folder), so later runs are offline. Only its ``tests/`` and
``pyproject.toml`` are kept: the tests run against the installed AuthX, the one the library wraps,
under AuthX's own pytest configuration and rootdir, not ours.

Both runs load ``authx_suite_plugin`` (next to this file) for the outcomes; the second also
installs the library on every AuthX instance (see that module). They run side by side: most of
the suite's time is spent sleeping.

``python -m tests.authx_suite`` prints the comparison; ``tests/authx_suite/test_authx_suite.py``
asserts it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Optional

PLUGIN_DIR = Path(__file__).resolve().parent
#: A run that takes longer than this is stuck (it takes about 15 s): stop it and fail.
TIMEOUT = 600.0

#: Differences that are intended: AuthX test id -> why the library changes that outcome.
#: Add an entry only for a real behaviour change (e.g. "a revoked token is refused"), never to
#: quiet a regression; say which part of the library causes it.
ALLOWED: dict[str, str] = {}


@dataclass(frozen=True)
class SuiteRun:
    """One run of AuthX's suite: every test's outcome and what the plugin counted."""

    tests: dict[str, dict[str, str]]
    exitstatus: int
    installs: int
    window: bool
    decisions: dict[str, int]
    coverage: dict[str, dict[str, int]]
    seconds: float
    log: Path

    def counts(self) -> Counter[str]:
        """How many tests ended with each outcome."""
        return Counter(result["outcome"] for result in self.tests.values())

    def collection_errors(self) -> list[str]:
        """The modules that did not import (a missing test dependency, usually)."""
        return sorted(nodeid for nodeid in self.tests if nodeid.startswith("collect::"))


@dataclass(frozen=True)
class Difference:
    """A test whose outcome differs between the two runs."""

    nodeid: str
    without: Optional[str]
    with_library: Optional[str]
    message: str

    @property
    def allowed(self) -> Optional[str]:
        """The reason it is intended, or ``None``."""
        return ALLOWED.get(self.nodeid)


def cache_dir() -> Path:
    """Where the unpacked suites are kept."""
    configured = os.environ.get("AUTHX_SUITE_CACHE")
    return Path(configured) if configured else Path(sys.prefix) / "authx-suite"


def suite_source(authx_version: Optional[str] = None) -> Path:
    """Return the folder holding AuthX's ``tests/`` and ``pyproject.toml``, downloading them once."""
    authx_version = authx_version or version("authx")
    target = cache_dir() / f"authx-{authx_version}"
    if (target / "pyproject.toml").is_file() and (target / "tests").is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".download-") as scratch:
        command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", "authx"]
        command += ["--dest", scratch, f"authx=={authx_version}"]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        archives = list(Path(scratch).glob("authx-*.tar.gz"))
        if done.returncode != 0 or len(archives) != 1:
            raise RuntimeError(
                f"could not download the sdist of authx=={authx_version} (AuthX's test suite): "
                f"{done.stderr.strip() or done.stdout.strip()}"
            )
        unpacked = Path(scratch) / "unpacked"
        _unpack_tests(archives[0], unpacked)
        try:
            unpacked.rename(target)
        except OSError:
            if not (target / "pyproject.toml").is_file():
                raise
            # Another run finished first; its copy is as good as ours.
    return target


def _unpack_tests(archive: Path, destination: Path) -> None:
    """Extract only ``tests/`` and ``pyproject.toml``: the tests must import the installed AuthX."""
    destination.mkdir()
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            rest = member.name.partition("/")[2]
            wanted = rest == "pyproject.toml" or rest.startswith("tests/")
            if not wanted or not (member.isfile() or member.isdir()) or ".." in Path(rest).parts:
                continue
            path = destination / rest
            if member.isdir():
                path.mkdir(parents=True, exist_ok=True)
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            source = tar.extractfile(member)
            assert source is not None
            with source, path.open("wb") as out:
                shutil.copyfileobj(source, out)


def _command(source: Path, report: Path, install: bool, extra: list[str]) -> list[str]:
    command = [sys.executable, "-m", "pytest", "-c", str(source / "pyproject.toml"), "--rootdir", str(source)]
    command += ["-p", "authx_suite_plugin", "-p", "no:cacheprovider", "-q", f"--authx-suite-report={report}"]
    if install:
        command.append("--authx-epoch-install")
    return command + extra


def _environment() -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTEST_")}
    env["PYTHONPATH"] = str(PLUGIN_DIR)  # the plugin only: AuthX's `tests` package must win
    return env


def run_both(workdir: Path, *, no_window: bool = False) -> tuple[SuiteRun, SuiteRun]:
    """Run AuthX's suite without and with the library, side by side; return both runs."""
    source = suite_source()
    extra = ["--authx-epoch-no-window"] if no_window else []
    started = time.perf_counter()
    running = []
    for name, install in (("without", False), ("with", True)):
        report, log = workdir / f"{name}.json", workdir / f"{name}.log"
        with log.open("w") as out:
            process = subprocess.Popen(
                _command(source, report, install, extra if install else []),
                cwd=source,
                env=_environment(),
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        running.append((process, report, log))
    runs = []
    for process, report, log in running:
        try:
            process.wait(timeout=max(1.0, TIMEOUT - (time.perf_counter() - started)))
        except subprocess.TimeoutExpired:
            for other, _, _ in running:
                other.kill()
                other.wait()
            raise RuntimeError(f"AuthX's suite did not finish in {TIMEOUT:.0f} s; see {log}") from None
        seconds = time.perf_counter() - started
        if not report.is_file():
            raise RuntimeError(f"AuthX's suite wrote no report (exit {process.returncode}); see {log}")
        data = json.loads(report.read_text())
        runs.append(
            SuiteRun(
                tests=data["tests"],
                exitstatus=data["exitstatus"],
                installs=data["installs"],
                window=data["window"],
                decisions=data["decisions"],
                coverage=data["coverage"],
                seconds=seconds,
                log=log,
            )
        )
    return runs[0], runs[1]


def differences(without: SuiteRun, with_library: SuiteRun) -> list[Difference]:
    """Every test whose outcome is not the same in both runs (a test missing from one included)."""
    found = []
    for nodeid in sorted(without.tests.keys() | with_library.tests.keys()):
        before, after = without.tests.get(nodeid), with_library.tests.get(nodeid)
        outcome_before = before["outcome"] if before else None
        outcome_after = after["outcome"] if after else None
        if outcome_before != outcome_after:
            message = (after or {}).get("message") or (before or {}).get("message") or ""
            found.append(Difference(nodeid, outcome_before, outcome_after, message))
    return found


def summary(without: SuiteRun, with_library: SuiteRun, found: list[Difference]) -> str:
    """A report for people: counts, what the library saw, and every difference."""

    def counts(run: SuiteRun) -> str:
        return ", ".join(f"{n} {outcome}" for outcome, n in sorted(run.counts().items())) or "no tests"

    coverage = with_library.coverage.values()
    lines = [
        f"AuthX {version('authx')}, suite from {suite_source()}",
        f"without authx-epoch: {counts(without)} (exit {without.exitstatus}, {without.seconds:.1f} s)",
        f"with authx-epoch:    {counts(with_library)} (exit {with_library.exitstatus}, {with_library.seconds:.1f} s)",
        f"installed on {with_library.installs} AuthX instances in {len(with_library.coverage)} tests "
        f"(migration window {'open' if with_library.window else 'closed: unstamped tokens refused'}); "
        f"the library's check ran in {sum(1 for c in coverage if c['checks'])} tests "
        f"({', '.join(f'{n} {reason}' for reason, n in sorted(with_library.decisions.items())) or 'no checks'}); "
        f"{sum(1 for c in coverage if c['callbacks_replaced'])} tests replaced its blocklist callback with their own",
    ]
    for run, name in ((without, "without"), (with_library, "with")):
        for nodeid in run.collection_errors():
            lines.append(f"collection error ({name}): {nodeid}: {run.tests[nodeid]['message']}")
    if not found:
        lines.append("no differences")
    for difference in found:
        verdict = f"allowed: {difference.allowed}" if difference.allowed else "NOT ALLOWED"
        lines.append(
            f"{difference.nodeid}: {difference.without} -> {difference.with_library} ({verdict})"
            + (f"\n    {difference.message}" if difference.message else "")
        )
    stale = sorted(set(ALLOWED) - {difference.nodeid for difference in found})
    lines += [f"allow-list entry with no difference (remove it): {nodeid}" for nodeid in stale]
    lines.append(f"logs: {without.log} {with_library.log}")
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> int:
    """Print the comparison; exit 1 on a difference the allow-list does not explain."""
    args = sys.argv[1:] if argv is None else argv
    workdir = Path(tempfile.mkdtemp(prefix="authx-suite-"))
    without, with_library = run_both(workdir, no_window="--no-window" in args)
    found = differences(without, with_library)
    print(summary(without, with_library, found))
    problems = without.collection_errors() or with_library.collection_errors()
    return 1 if problems or any(difference.allowed is None for difference in found) else 0

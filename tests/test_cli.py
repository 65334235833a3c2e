"""The operator's command line, run for real: ``python -m authx_epoch`` in a subprocess against real stores.

Tokens are minted by a real AuthX with authx-epoch installed on the same store, exactly as an
application would mint them; the CLI then acts on the store from another process.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import os
import pty
import select
import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from shutil import which
from typing import Any, Optional

import click
import httpx
import msgpack
import pytest
from authx import AuthX, AuthXConfig, TokenPayload
from click.testing import CliRunner
from fastapi import Depends, FastAPI

import authx_epoch
from authx_epoch import EpochRevocation
from authx_epoch.cli import PROGRESS_THRESHOLD, cli
from authx_epoch.records import SnapshotEntry
from authx_epoch.snapshot import write_snapshot
from tests.plugins.redis_servers import answers, unique_prefix

pytestmark = pytest.mark.anyio

SECRET = "authx-epoch-cli-tests-secret-0123456789abcdef"
REPO = Path(__file__).resolve().parent.parent


def sqlite_url(request: pytest.FixtureRequest, tmp_path: Path, name: str) -> str:
    return f"sqlite:///{tmp_path / name}.db"


def redis_store_url(request: pytest.FixtureRequest, tmp_path: Path, name: str) -> str:
    """A Redis store URL with a key prefix of its own on the shared test Redis, wiped afterwards."""
    base: str = request.getfixturevalue("redis_url")
    url = f"{base}{'&' if '?' in base else '?'}prefix={unique_prefix()}"

    def wipe() -> None:
        store = authx_epoch.open_store(url)
        store.sync.wipe()
        store.sync.close()

    request.addfinalizer(wipe)
    return url


def cli_store_urls() -> list[Any]:
    """The stores the CLI runs against: a factory of fresh store URLs per backend."""
    return [
        pytest.param(sqlite_url, id="sqlite", marks=pytest.mark.sqlite),
        pytest.param(redis_store_url, id="redis", marks=pytest.mark.redis),
    ]


def redis_reachable() -> bool:
    # Decided at collection, so that the transcript moves state between SQLite and Redis when a
    # Redis can be had, and between two SQLite files otherwise (it never disappears).
    if importlib.util.find_spec("redis") is None:
        return False
    return bool(os.environ.get("REDIS_URL")) or answers("redis://127.0.0.1:6379/0") or bool(which("redis-server"))


def transcript_moves() -> list[Any]:
    if redis_reachable():
        return [
            pytest.param(sqlite_url, redis_store_url, id="sqlite-to-redis", marks=pytest.mark.redis),
            pytest.param(redis_store_url, sqlite_url, id="redis-to-sqlite", marks=pytest.mark.redis),
        ]
    return [pytest.param(sqlite_url, sqlite_url, id="sqlite-to-sqlite", marks=pytest.mark.sqlite)]


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


def run(
    *args: str,
    store: Optional[str] = None,
    stdin: Optional[str] = None,
    cwd: Optional[Path] = None,
    namespace: Optional[str] = None,
) -> Result:
    """Run the real command; every run is checked for a traceback, whatever the test expects."""
    env = {key: value for key, value in os.environ.items() if key not in ("AUTHX_EPOCH_STORE", "AUTHX_EPOCH_NAMESPACE")}
    # From another directory too, the command is this checkout's, not an installed copy.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    if store is not None:
        env["AUTHX_EPOCH_STORE"] = store
    if namespace is not None:
        env["AUTHX_EPOCH_NAMESPACE"] = namespace
    proc = subprocess.run(
        [sys.executable, "-m", "authx_epoch", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=60,
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stdout, proc.stdout
    return Result(proc.returncode, proc.stdout, proc.stderr)


@dataclass
class Command:
    args: tuple[str, ...]
    store: Optional[str]
    stdin: Optional[str]

    def __init__(self, *args: str, store: Optional[str] = None, stdin: Optional[str] = None) -> None:
        self.args, self.store, self.stdin = args, store, stdin


def run_all(*commands: Command) -> list[Result]:
    """Run independent commands at the same time (each still a real process); results in order."""
    procs = []
    for command in commands:
        env = {key: value for key, value in os.environ.items() if key != "AUTHX_EPOCH_STORE"}
        if command.store is not None:
            env["AUTHX_EPOCH_STORE"] = command.store
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "authx_epoch", *command.args],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
            )
        )
    results = []
    for proc, command in zip(procs, commands, strict=True):
        out, err = proc.communicate(command.stdin or "", timeout=60)
        assert "Traceback" not in err, err
        results.append(Result(proc.returncode, out, err))
    return results


def one_line_error(result: Result, code: int = 2) -> str:
    """The one error line of a failed command; ``code`` 1 for a refusal, 2 for a usage or store error."""
    assert result.code == code, result
    # Commands that opened a store first say which one (see test_every_command_names_its_store).
    lines = [line for line in result.err.splitlines() if line.strip() and not line.startswith("authx-epoch: store ")]
    assert len(lines) == 1, result.err
    assert lines[0].startswith("authx-epoch: error: "), lines[0]
    return lines[0]


@dataclass
class App:
    """A real AuthX app with authx-epoch installed on the store the CLI is pointed at."""

    auth: AuthX[Any]
    revocation: EpochRevocation
    app: FastAPI

    def token(self, uid: str, **data: Any) -> str:
        return self.auth.create_access_token(uid=uid, data=data or None)

    async def status_of(self, token: str) -> int:
        transport = httpx.ASGITransport(app=self.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            response = await client.get("/protected", headers={"Authorization": f"Bearer {token}"})
        return response.status_code


def make_app(store: str) -> App:
    auth: AuthX[Any] = AuthX(config=AuthXConfig(JWT_SECRET_KEY=SECRET, JWT_TOKEN_LOCATION=["headers"]))
    app = FastAPI()
    auth.handle_errors(app)
    revocation = authx_epoch.install(auth, store, app=app)

    access = Depends(auth.access_token_required)

    @app.get("/protected")
    async def protected(payload: TokenPayload = access) -> dict[str, Any]:
        return {"sub": payload.sub}

    return App(auth=auth, revocation=revocation, app=app)


@pytest.fixture
def apps() -> Iterator[list[App]]:
    made: list[App] = []
    yield made
    for app in made:
        app.revocation.store.sync.close()


@pytest.fixture(params=cli_store_urls())
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    factory = request.param
    url: str = factory(request, tmp_path, "main")
    return url


# -- the operator transcript -----------------------------------------------------------------


@pytest.mark.parametrize(("source", "target"), transcript_moves())
async def test_operator_transcript(
    source: Any, target: Any, request: pytest.FixtureRequest, tmp_path: Path, apps: list[App]
) -> None:
    """Bump, inspect, status, stats, export, import into another store: what an operator does at 3 a.m."""
    store_url: str = source(request, tmp_path, "source")
    app = make_app(store_url)
    apps.append(app)
    alice, bob, carol, dave = (
        app.token("alice"),
        app.token("bob"),
        app.token("carol", session_id="carol-laptop"),
        app.token("dave"),
    )
    assert await app.status_of(alice) == 200

    accepted = run("inspect", alice, "--json", store=store_url)
    assert accepted.code == 0
    assert accepted.json()["accepted"] is True
    assert accepted.json()["reason"] == "accepted"
    assert accepted.json()["signature_verified"] is False

    bumped = run("bump", "alice", "--reason", "laptop stolen", "--json", store=store_url)
    assert bumped.code == 0
    assert bumped.json()["record"]["reason"] == "laptop stolen"
    assert await app.status_of(alice) == 401

    rejected, status, revoked, session = run_all(
        Command("inspect", alice, store=store_url),
        Command("status", "alice", store=store_url),
        Command("revoke", "-", store=store_url, stdin=bob + "\n"),
        Command("revoke-session", "carol-laptop", "--expires-at", "+1h", store=store_url),
    )
    assert rejected.code == 1
    assert "REJECTED (user_epoch)" in rejected.out
    assert "laptop stolen" in rejected.out
    assert "signature: not verified" in rejected.out
    assert status.code == 0
    assert "reason:     laptop stolen" in status.out
    assert f"epoch:      {bumped.json()['record']['epoch']}" in status.out
    assert (revoked.code, session.code) == (0, 0)
    assert [await app.status_of(token) for token in (alice, bob, carol, dave)] == [401, 401, 401, 200]

    snapshot = tmp_path / "backup.authx-epoch"
    stats, exported = run_all(
        Command("stats", "--json", store=store_url), Command("export", str(snapshot), "--json", store=store_url)
    )
    assert stats.code == 0
    counts = stats.json()
    assert (counts["users"], counts["revoked_tokens"], counts["revoked_sessions"]) == (4, 1, 1)
    assert counts["kind"] == app.revocation.store.sync.kind
    assert exported.code == 0
    assert exported.json()["counts"] == {"global": 1, "user": 4, "token": 1, "session": 1, "revoked_session": 1}
    assert "1 sessions (1 revoked)" in run("export", str(tmp_path / "again.bin"), store=store_url).out

    second: str = target(request, tmp_path, "imported")
    imported = run("import", "--create", str(snapshot), "--json", store=second)
    assert imported.code == 0, imported.err
    assert imported.json()["imported"] == 7

    # The imported store judges every token as the original does, with the same reason.
    tokens = (alice, bob, carol, dave)
    originals = [app.revocation.sync.check(token) for token in tokens]
    assert [decision.reason.value for decision in originals] == [
        "user_epoch",
        "token_revoked",
        "session_revoked",
        "accepted",
    ]
    seen = run_all(*(Command("inspect", token, "--json", store=second) for token in tokens))
    assert [(result.code, result.json()["reason"]) for result in seen] == [
        (0 if decision.accepted else 1, decision.reason.value) for decision in originals
    ]

    # The imported store serves a real app the same way: the audit trail and every revocation moved.
    moved = make_app(second)
    apps.append(moved)
    assert [await moved.status_of(token) for token in tokens] == [401, 401, 401, 200]
    assert await moved.revocation.get_user_record("alice") == await app.revocation.get_user_record("alice")
    assert (await moved.revocation.stats()).users == counts["users"]


async def test_bump_global_rejects_every_earlier_token(store_url: str, apps: list[App]) -> None:
    app = make_app(store_url)
    apps.append(app)
    token = app.token("erin")
    result = run("bump-global", "--reason", "signing key leaked", store=store_url)
    assert result.code == 0
    assert "global epoch" in result.out
    seen = run("--json", "inspect", token, store=store_url)
    assert (seen.code, seen.json()["reason"]) == (1, "global_epoch")
    assert await app.status_of(token) == 401
    assert await app.status_of(app.token("erin")) == 200
    record = await app.revocation.get_global_record()
    assert record is not None
    assert record.reason == "signing key leaked"


async def test_revoke_by_jti_and_expired_tokens(store_url: str, apps: list[App]) -> None:
    app = make_app(store_url)
    apps.append(app)
    token = app.token("frank")
    payload = app.auth._decode_token(token)
    assert payload.jti is not None
    assert isinstance(payload.exp, dt.datetime)
    old = app.auth.create_access_token(uid="frank", expiry=dt.timedelta(seconds=-120))
    by_jti, expired, inspected = run_all(
        Command(
            "revoke", "--jti", payload.jti, "--user", "frank", "--expires-at", payload.exp.isoformat(), store=store_url
        ),
        Command("--json", "revoke", old, store=store_url),
        Command("--json", "inspect", old, store=store_url),
    )
    assert by_jti.code == 0, by_jti.err
    assert await app.status_of(token) == 401
    assert app.revocation.sync.check(token).reason.value == "token_revoked"
    assert expired.code == 0
    assert expired.json()["revoked"] is False
    assert app.revocation.sync.stats().revoked_tokens == 1
    assert inspected.code == 1
    assert inspected.json()["expired"] is True
    assert inspected.json()["accepted"] is True


async def test_lost_state_is_reported(store_url: str, apps: list[App]) -> None:
    app = make_app(store_url)
    apps.append(app)
    token = app.token("gina")
    app.revocation.store.sync.wipe()
    seen = run("--json", "inspect", token, store=store_url)
    assert seen.code == 1
    assert seen.json()["reason"] == "lost_state"
    assert "lost" in seen.json()["explanation"]
    assert "warning: this store has no global record" in seen.err


def test_status_of_an_unknown_user(store_url: str, apps: list[App]) -> None:
    apps.append(make_app(store_url))
    result = run("status", "nobody", store=store_url)
    assert result.code == 0
    assert "no record for 'nobody'" in result.out


# -- store selection ------------------------------------------------------------------------


def test_store_option_overrides_the_environment(tmp_path: Path, apps: list[App]) -> None:
    first, second = f"sqlite:///{tmp_path / 'a.db'}", f"sqlite:///{tmp_path / 'b.db'}"
    apps.extend([make_app(first), make_app(second)])
    env_only, after, before = run_all(
        Command("bump", "hal", store=first),
        Command("bump", "ida", "--store", second, store=first),
        Command("--store", second, "bump", "joe", store=first),
    )
    assert (env_only.code, after.code, before.code) == (0, 0, 0)
    assert [apps[0].revocation.sync.get_user_record(uid) is not None for uid in ("hal", "ida", "joe")] == [
        True,
        False,
        False,
    ]
    assert [apps[1].revocation.sync.get_user_record(uid) is not None for uid in ("hal", "ida", "joe")] == [
        False,
        True,
        True,
    ]


def test_memory_store_says_it_does_not_persist() -> None:
    result = run("--json", "stats", store="memory://")
    assert result.code == 0
    assert result.json()["kind"] == "memory"
    assert "memory:// store lives only as long as this command" in result.err


# -- errors: one line, exit code 2, never a traceback ---------------------------------------


def test_no_store_given_means_the_store_install_uses_by_default(tmp_path: Path, apps: list[App]) -> None:
    """Without --store or AUTHX_EPOCH_STORE, the CLI acts on install()'s default store: the same file."""
    app = make_app(f"sqlite:///{tmp_path / 'authx-epoch.db'}")
    apps.append(app)
    token = app.token("lena")
    bumped = run("bump", "lena", cwd=tmp_path)
    assert bumped.code == 0, bumped.err
    assert app.revocation.sync.check(token).reason.value == "user_epoch"


def test_bad_url_is_one_line_and_hides_the_password() -> None:
    line = one_line_error(run("stats", store="rediz://admin:hunter2@cache.internal:6379/0"))
    assert "unknown store URL" in line
    assert "hunter2" not in line
    assert "***" in line


@pytest.mark.redis
def test_unreachable_redis_is_one_line_and_hides_the_password(redis_url: str) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        # Nothing listens: the port is bound but never accepts.
        line = one_line_error(run("bump", "kim", store=f"redis://:hunter2@127.0.0.1:{port}/0"))
    assert "unavailable" in line
    assert "hunter2" not in line


def test_missing_sqlite_file_is_refused_and_not_created(tmp_path: Path) -> None:
    path = tmp_path / "typo.db"
    line = one_line_error(run("bump", "ivan", store=f"sqlite:///{path}"))
    assert "does not exist" in line
    assert not path.exists()


# -- the wrong store: refused before anything is written (issue 11) ---------------------------


WRITES = [
    ["bump", "otto"],
    ["bump-global", "--yes"],
    ["revoke", "--jti", "j-1", "--user", "otto", "--expires-at", "+1h"],
    ["revoke-session", "otto-laptop"],
]


def set_up(url: str, namespace: str = "") -> str:
    """Set a store up as install() does; return its location."""
    store = authx_epoch.open_store(url, namespace=namespace)
    try:
        store.sync.setup(time.time())
        return store.location
    finally:
        store.sync.close()


def global_record_of(url: str, namespace: str = "") -> Any:
    store = authx_epoch.open_store(url, namespace=namespace)
    try:
        return store.sync.get_global(time.time()), store.sync.stats(time.time())
    finally:
        store.sync.close()


@pytest.mark.redis
@pytest.mark.parametrize("args", WRITES, ids=[args[0] for args in WRITES])
def test_writes_refuse_a_redis_store_no_app_set_up(
    args: list[str], redis_url: str, request: pytest.FixtureRequest
) -> None:
    """A forgotten ?prefix= (or another prefix, another db): refused, nothing written; --create writes."""
    app_url = redis_store_url(request, Path(), "app")
    set_up(app_url)
    prefix = unique_prefix()
    typo = f"{redis_url}{'&' if '?' in redis_url else '?'}prefix={prefix}"

    def wipe() -> None:
        store = authx_epoch.open_store(typo)
        store.sync.wipe()
        store.sync.close()

    request.addfinalizer(wipe)
    result = run(*args, "--json", store=typo)
    line = one_line_error(result)
    assert "no global record" in line
    assert "nothing was written" in line
    assert "--create" in line
    assert f"prefix={prefix}" in line
    assert "the root namespace" in line
    assert result.out == ""
    record, stats = global_record_of(typo)
    assert record is None
    assert (stats.users, stats.revoked_tokens, stats.revoked_sessions) == (0, 0, 0)
    created = run(*args, "--create", "--json", store=typo)
    assert created.code == 0, created.err
    assert created.json()["location"].endswith(f"prefix={prefix}")


@pytest.mark.parametrize("args", WRITES, ids=[args[0] for args in WRITES])
def test_writes_refuse_a_namespace_no_app_set_up(args: list[str], tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'app.db'}"
    location = set_up(url)
    line = one_line_error(run(*args, store=url, namespace="typo"))
    assert f"{location}, 'typo' has no global record" in line
    assert global_record_of(url, "typo")[0] is None


def test_import_refuses_a_store_no_app_set_up_unless_created(tmp_path: Path, apps: list[App]) -> None:
    source = f"sqlite:///{tmp_path / 'source.db'}"
    apps.append(make_app(source))
    assert run("export", str(tmp_path / "backup.bin"), store=source).code == 0
    empty = f"sqlite:///{tmp_path / 'empty.db'}"
    set_up(empty, namespace="other")  # the file exists, but nothing set its root namespace up
    assert "no global record" in one_line_error(run("import", str(tmp_path / "backup.bin"), store=empty))
    assert global_record_of(empty)[0] is None
    assert run("import", "--create", str(tmp_path / "backup.bin"), store=empty).code == 0
    assert global_record_of(empty)[0] is not None


def test_a_relative_sqlite_path_from_another_directory_is_refused_and_named(tmp_path: Path, apps: list[App]) -> None:
    """The app's relative path, run from elsewhere: refused with the absolute path and the directory."""
    (tmp_path / "app").mkdir()
    (tmp_path / "elsewhere").mkdir()
    apps.append(make_app(f"sqlite:///{tmp_path / 'app' / 'authx-epoch.db'}"))
    for args in (["bump", "otto"], ["status", "otto"], ["revoke-session", "s"]):
        for store in ("sqlite:///authx-epoch.db", None):
            line = one_line_error(run(*args, store=store, cwd=tmp_path / "elsewhere"))
            assert f"no SQLite store at {tmp_path / 'elsewhere' / 'authx-epoch.db'}" in line
            assert f"the current directory is {tmp_path / 'elsewhere'}" in line
            assert ("--create" in line) == (args[0] != "status")
    assert not (tmp_path / "elsewhere" / "authx-epoch.db").exists()
    created = run("bump", "otto", "--create", cwd=tmp_path / "elsewhere")
    assert created.code == 0, created.err
    assert (tmp_path / "elsewhere" / "authx-epoch.db").exists()


def test_every_command_names_its_store(store_url: str, tmp_path: Path, apps: list[App]) -> None:
    """One stderr line says which store and namespace (never a password); JSON carries them too."""
    app = make_app(store_url)
    apps.append(app)
    token = app.token("otto")
    location = app.revocation.store.location
    commands = [
        ["bump", "otto"],
        ["bump-global", "--yes"],
        ["revoke", "--jti", "j-1", "--user", "otto", "--expires-at", "+1h"],
        ["revoke-session", "otto-laptop"],
        ["status", "otto"],
        ["inspect", token],
        ["stats"],
        ["export", str(tmp_path / "backup.bin")],
        ["import", str(tmp_path / "backup.bin")],
    ]
    for args in commands:
        result = run(*args, "--json", store=store_url)
        assert result.code in (0, 1), result.err
        assert f"authx-epoch: store {location}, the root namespace" in result.err.splitlines()
        assert (result.json()["location"], result.json()["namespace"]) == (location, "")
    if location.startswith("sqlite:"):
        assert location == f"sqlite:///{tmp_path / 'main.db'}"


@pytest.mark.redis
def test_the_store_line_hides_the_password(redis_url: str, request: pytest.FixtureRequest) -> None:
    url = redis_store_url(request, Path(), "pw").replace("redis://", "redis://:hunter2@", 1)
    if "@" in redis_url:
        pytest.skip("the test Redis already has credentials")
    result = run("stats", store=url)
    assert "hunter2" not in result.err + result.out
    assert "authx-epoch: store redis://" in result.err


def test_revoke_session_of_an_unknown_id_warns(store_url: str, apps: list[App]) -> None:
    """A typo is revoked anyway (harmless, idempotent) but said on stderr; exit code 0."""
    app = make_app(store_url)
    apps.append(app)
    pair = app.revocation.sync.create_token_pair("otto")
    unknown = run("revoke-session", "otto-laptpo", "--json", store=store_url)
    assert unknown.code == 0, unknown.err
    assert unknown.json()["known"] is False
    assert "warning: no live session 'otto-laptpo' was known to this store" in unknown.err
    human = run("revoke-session", "otto-lpatop", store=store_url)
    assert human.code == 0
    assert "warning: no live session" in human.err
    session_id = pair.session_id
    known = run("revoke-session", session_id, "--json", store=store_url)
    assert known.code == 0, known.err
    assert known.json()["known"] is True
    assert "warning" not in known.err


@pytest.mark.parametrize(
    ("url", "hint"),
    [
        ("redis://127.0.0.1:6379/0?prefx=app", "(did you mean 'prefix'?)"),
        ("sqlite:///app.db?prefix=app", "a sqlite:// URL takes: none"),
    ],
)
def test_a_mistyped_url_option_lists_the_known_ones(url: str, hint: str, tmp_path: Path) -> None:
    for args in (["bump", "otto"], ["stats"]):
        line = one_line_error(run(*args, store=url, cwd=tmp_path))
        assert "unknown option" in line
        assert hint in line
    if url.startswith("redis"):
        assert "a redis:// URL takes: prefix" in line
    assert not (tmp_path / "app.db").exists()


def test_damaged_sqlite_file(tmp_path: Path) -> None:
    path = tmp_path / "damaged.db"
    path.write_bytes(b"this is not a database" * 100)
    line = one_line_error(run("stats", store=f"sqlite:///{path}"))
    assert "not a database" in line


def test_malformed_token_in_a_subprocess(tmp_path: Path) -> None:
    line = one_line_error(run("inspect", "not-a-token", store=f"sqlite:///{tmp_path / 'unused.db'}"))
    assert "malformed token" in line


def test_reason_too_long_changes_nothing(store_url: str, apps: list[App]) -> None:
    app = make_app(store_url)
    apps.append(app)
    assert "longer than 500" in one_line_error(run("bump", "judy", "--reason", "x" * 501, store=store_url))
    assert app.revocation.sync.get_user_record("judy") is None


def test_import_refuses_a_foreign_file_in_a_subprocess(tmp_path: Path, apps: list[App]) -> None:
    url = f"sqlite:///{tmp_path / 'target.db'}"
    app = make_app(url)
    apps.append(app)
    before = app.revocation.sync.stats()
    path = tmp_path / "users.json"
    path.write_text('{"users": ["alice"]}')
    # Refusing a file is a refusal (exit 1), not a usage or store error (exit 2).
    assert "not an authx-epoch snapshot" in one_line_error(run("import", str(path), store=url), code=1)
    assert app.revocation.sync.stats() == before


@pytest.mark.redis
def test_import_usage_and_store_errors_exit_2(tmp_path: Path, apps: list[App], redis_url: str) -> None:
    snapshot = tmp_path / "backup.bin"
    url = f"sqlite:///{tmp_path / 'source.db'}"
    apps.append(make_app(url))
    assert run("export", str(snapshot), store=url).code == 0
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        nowhere = f"redis://127.0.0.1:{sock.getsockname()[1]}/0"
        missing, directory, no_argument, unreachable = run_all(
            Command("import", str(tmp_path / "no-such-file"), store=url),
            Command("import", str(tmp_path), store=url),
            Command("import", store=url),
            Command("import", str(snapshot), store=nowhere),
        )
    assert [result.code for result in (missing, directory, no_argument)] == [2, 2, 2]
    assert "does not exist" in missing.err
    assert "is a directory" in directory.err
    assert "Missing argument" in no_argument.err
    assert "unavailable" in one_line_error(unreachable)


@pytest.mark.redis
async def test_session_bound_tokens_move_between_stores(
    request: pytest.FixtureRequest, tmp_path: Path, apps: list[App]
) -> None:
    """A session's live record goes with an export: its tokens are accepted where it is imported, not lost_state."""
    source = sqlite_url(request, tmp_path, "source")
    app = make_app(source)
    apps.append(app)
    pair = await app.revocation.create_token_pair("lena")
    rotated = await app.revocation.rotate_refresh_token(pair.refresh_token)
    tokens = [pair.access_token, rotated.access_token, rotated.refresh_token]
    assert [await app.status_of(token) for token in tokens[:2]] == [200, 200]
    targets = [redis_store_url(request, tmp_path, "target"), sqlite_url(request, tmp_path, "target")]
    snapshot = tmp_path / "sessions.bin"

    def move() -> None:
        exported = run("export", str(snapshot), "--force", "--json", store=source)
        assert exported.code == 0, exported.err
        assert exported.json()["counts"]["session"] == 1
        imports = run_all(*(Command("import", "--create", str(snapshot), "--json", store=target) for target in targets))
        assert [result.code for result in imports] == [0, 0], [result.err for result in imports]

    def judged() -> list[tuple[int, str]]:
        """How each target judges each token, all inspected at once."""
        commands = [Command("--json", "inspect", "-", store=t, stdin=token) for t in targets for token in tokens]
        return [(result.code, result.json()["reason"]) for result in run_all(*commands)]

    move()
    assert judged() == [(0, "accepted")] * 6
    for target in targets:
        moved = make_app(target)
        apps.append(moved)
        assert [await moved.status_of(token) for token in tokens[:2]] == [200, 200]
        assert await moved.revocation.get_session_record(pair.session_id) == await app.revocation.get_session_record(
            pair.session_id
        )

    assert run("revoke-session", pair.session_id, "--expires-at", "+1h", store=source).code == 0
    move()
    assert judged() == [(1, "session_revoked")] * 6


# -- namespaces ------------------------------------------------------------------------------


def test_every_command_works_in_the_namespace_it_is_given(
    store_url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    now = time.time()
    root, admin = authx_epoch.open_store(store_url), authx_epoch.open_store(store_url, namespace="admin")

    def wipe_admin() -> None:  # the store's own fixture wipes its root namespace only
        store = authx_epoch.open_store(store_url, namespace="admin")
        store.sync.wipe()
        store.sync.close()

    request.addfinalizer(wipe_admin)
    try:
        for store in (root, admin):
            store.sync.setup(now)
            store.sync.issue("alice", now, now + 900)
        root_alice, root_global = root.sync.get_user("alice", now), root.sync.get_global(now)
        location = root.location
    finally:
        root.sync.close()
        admin.sync.close()
    # --namespace before or after the command, or AUTHX_EPOCH_NAMESPACE: the same namespace.
    bumped = run("--namespace", "admin", "--json", "bump", "alice", "--reason", "admins only", store=store_url)
    assert bumped.code == 0, bumped.err
    status = run("status", "alice", "--namespace", "admin", "--json", store=store_url).json()
    assert (status["namespace"], status["location"]) == ("admin", location)
    assert status["record"]["epoch"] == bumped.json()["record"]["epoch"]
    assert status["record"]["reason"] == "admins only"
    assert run("bump-global", "--yes", "--json", store=store_url, namespace="admin").json()["namespace"] == "admin"
    stats = run("stats", "--json", store=store_url, namespace="admin").json()
    assert (stats["namespace"], stats["location"], stats["users"]) == ("admin", location, 1)
    human = run("stats", store=store_url, namespace="admin").out
    assert ["namespace:", "admin"] in [line.split() for line in human.splitlines()]
    # The root namespace saw none of it.
    root_status = run("status", "alice", "--json", store=store_url).json()
    assert (root_status["namespace"], root_status["location"]) == ("", location)
    assert root_alice is not None
    assert root_global is not None
    assert root_status["record"]["epoch"] == root_alice.epoch
    assert root_status["global"]["epoch"] == root_global.epoch
    # Export names its namespace; import goes where it is told.
    exported = run("export", str(tmp_path / "admin.bin"), "--namespace", "admin", "--json", store=store_url)
    assert exported.json()["namespace"] == "admin"
    with open(tmp_path / "admin.bin", "rb") as stream:
        assert msgpack.Unpacker(stream, raw=False).unpack()["namespace"] == "admin"
    target = f"sqlite:///{tmp_path / 'target.db'}"
    imported = run("import", "--create", str(tmp_path / "admin.bin"), "--json", store=target, namespace="users").json()
    assert (imported["namespace"], imported["source_namespace"]) == ("users", "admin")
    moved = run("status", "alice", "--json", store=target, namespace="users").json()
    assert moved["record"]["epoch"] == status["record"]["epoch"]
    assert run("status", "alice", "--json", store=target).json()["record"] is None


def test_a_namespace_without_a_global_record_is_pointed_out(store_url: str) -> None:
    store = authx_epoch.open_store(store_url)
    store.sync.setup(time.time())
    store.sync.close()
    result = run("stats", store=store_url, namespace="typo")
    assert result.code == 0
    assert "namespace 'typo' of this store has no global record" in result.err
    assert "--namespace" in result.err


@pytest.mark.parametrize("name", ["a~b", "-a", "x" * 65, "a b"])
def test_a_bad_namespace_is_a_usage_error(name: str, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'never-opened.db'}"
    for args in (["--namespace", name, "stats"], ["stats", "--namespace", name]):
        result = invoke(*args, store=url)
        assert result.code == 2
        assert "Invalid value for '--namespace'" in result.err
        assert "letters, digits" in " ".join(result.err.split())
    assert not (tmp_path / "never-opened.db").exists()


# The matrices below parse input before any store is opened; they run the same command object
# in-process with Click's runner (a subprocess each would cost half a second for nothing more).


def invoke(*args: str, store: Optional[str] = None) -> Result:
    runner = CliRunner(env={"AUTHX_EPOCH_STORE": store})
    result = runner.invoke(cli, list(args), catch_exceptions=True)
    # An exception that escaped the command (other than SystemExit) would be a traceback.
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    return Result(result.exit_code, result.stdout, result.stderr)


@pytest.mark.parametrize(
    "token",
    ["not-a-token", "a.b", "a.!!!.c", "eyJhbGciOiJIUzI1NiJ9.WzEsMl0.sig", "x.y.z.w", "x" * 20000, "-"],
    ids=["no-dots", "two-parts", "bad-base64", "array-payload", "four-parts", "too-long", "empty-stdin"],
)
def test_malformed_token(token: str, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'never-opened.db'}"
    assert "malformed token" in one_line_error(invoke("inspect", token, store=url))
    assert "malformed token" in one_line_error(invoke("revoke", token, store=url))
    assert not (tmp_path / "never-opened.db").exists()


def test_token_without_sub_or_jti(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'never-opened.db'}"
    no_sub = "eyJhbGciOiJIUzI1NiJ9.eyJqdGkiOiJ4In0.sig"  # {"jti": "x"}
    no_jti = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.sig"  # {"sub": "x"}
    assert "no string sub" in one_line_error(invoke("inspect", no_sub, store=url))
    assert "cannot be revoked alone" in one_line_error(invoke("revoke", no_jti, store=url))
    assert not (tmp_path / "never-opened.db").exists()


@pytest.mark.parametrize(
    "args",
    [
        ["bump", ""],
        ["bump"],
        ["revoke"],
        ["revoke", "--jti", "j"],
        ["revoke", "t.t.t", "--jti", "j"],
        ["revoke", "--jti", "", "--user", "u", "--expires-at", "+1h"],
        ["revoke", "--jti", "j", "--user", "u", "--expires-at", "2030-01-01T00:00:00"],
        ["revoke", "--jti", "j", "--user", "u", "--expires-at", "soon"],
        ["revoke-session", "s", "--expires-at", "nan"],
        ["revoke-session", " "],
        ["inspect", "t.t.t", "--claim-names", "uep,sub,sid"],
        ["inspect", "t.t.t", "--claim-names", "uep,gep"],
        ["demo", "--port", "99999"],
        ["frobnicate"],
    ],
)
def test_usage_errors_exit_2(args: list[str], tmp_path: Path) -> None:
    result = invoke(*args, store=f"sqlite:///{tmp_path / 'never-opened.db'}")
    assert result.code == 2
    assert "Error" in result.err
    assert not (tmp_path / "never-opened.db").exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty"),
        (b'{"users": []}', "not an authx-epoch snapshot"),
        (msgpack.packb({"format": "something-else", "version": 1}), "not an authx-epoch snapshot"),
        (msgpack.packb({"format": "authx-epoch-snapshot", "version": 99, "entries": 0}), "newer"),
        (
            msgpack.packb(
                {"format": "authx-epoch-snapshot", "version": 1, "entries": 2, "created_at": 1.0, "source": "x"}
            )
            + msgpack.packb(["session", "s", None, 9e9, None]),
            "truncated",
        ),
        (bytes(range(256)) * 4, "not"),
    ],
    ids=["empty", "json", "other-format", "newer-version", "truncated", "random-bytes"],
)
def test_import_refuses_a_file_that_is_not_a_snapshot(
    content: bytes, message: str, tmp_path: Path, apps: list[App]
) -> None:
    url = f"sqlite:///{tmp_path / 'target.db'}"
    app = make_app(url)
    apps.append(app)
    app.revocation.sync.bump_user_epoch("lee", reason="before the import")
    before = list(app.revocation.store.sync.export_entries(time.time()))
    path = tmp_path / "not-a-snapshot"
    path.write_bytes(content)
    line = one_line_error(invoke("import", str(path), store=url), code=1)
    assert message in line
    assert "nothing was imported" in line or message == "not"
    assert list(app.revocation.store.sync.export_entries(time.time())) == before


def test_export_does_not_overwrite_without_force(tmp_path: Path, apps: list[App]) -> None:
    url = f"sqlite:///{tmp_path / 'source.db'}"
    apps.append(make_app(url))
    target = tmp_path / "precious.bin"
    target.write_bytes(b"keep me")
    assert "--force" in one_line_error(run("export", str(target), store=url))
    assert target.read_bytes() == b"keep me"
    assert run("export", str(target), "--force", store=url).code == 0
    assert target.read_bytes() != b"keep me"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".authx-epoch-")] == []


# -- terminals: progress bars and confirmation ----------------------------------------------


def run_on_terminal(*args: str, store: str, answer: Optional[bytes] = None) -> tuple[int, str, str]:
    """Run with stderr (and stdin) on a pseudo-terminal, stdout on a pipe; return (code, stdout, terminal)."""
    controller, terminal = pty.openpty()
    env = {**os.environ, "AUTHX_EPOCH_STORE": store, "COLUMNS": "100"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "authx_epoch", *args],
        stdin=terminal,
        stdout=subprocess.PIPE,
        stderr=terminal,
        env=env,
    )
    os.close(terminal)
    seen = b""
    if answer is not None:
        os.write(controller, answer)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([controller], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(controller, 65536)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
        elif proc.poll() is not None:
            break
    out, _ = proc.communicate(timeout=60)
    code = proc.returncode
    os.close(controller)
    return code, out.decode(), seen.decode(errors="replace")


def big_snapshot(path: Path, count: int) -> None:
    far = time.time() + 3600
    entries = [SnapshotEntry("session", f"session-{i}", expires_at=far) for i in range(count)]
    with path.open("wb") as stream:
        write_snapshot(stream, entries, source="sqlite", now=time.time())


def test_progress_bar_only_on_a_terminal(tmp_path: Path) -> None:
    count = PROGRESS_THRESHOLD + 500
    snapshot = tmp_path / "big.bin"
    big_snapshot(snapshot, count)
    on_tty = f"sqlite:///{tmp_path / 'tty.db'}"
    code, out, terminal = run_on_terminal("import", "--create", str(snapshot), store=on_tty)
    assert code == 0, terminal
    assert f"imported {count} entries" in out
    assert "importing" in terminal
    assert "100%" in terminal

    piped = run("import", "--create", str(snapshot), store=f"sqlite:///{tmp_path / 'pipe.db'}")
    assert piped.code == 0
    assert "importing" not in piped.err
    assert "%" not in piped.err

    code, _, terminal = run_on_terminal("export", str(tmp_path / "again.bin"), store=on_tty)
    assert code == 0
    assert "exporting" in terminal
    assert run("--json", "stats", store=on_tty).json()["revoked_sessions"] == count


def test_bump_global_asks_on_a_terminal(tmp_path: Path, apps: list[App]) -> None:
    url = f"sqlite:///{tmp_path / 'ask.db'}"
    apps.append(make_app(url))
    code, _, terminal = run_on_terminal("bump-global", store=url, answer=b"n\n")
    assert code == 1
    assert "Go on?" in terminal
    assert run("--json", "stats", store=url).json()["global"]["bumped_at"] is None
    code, _, _ = run_on_terminal("bump-global", "--yes", store=url)
    assert code == 0
    assert run("--json", "stats", store=url).json()["global"]["bumped_at"] is not None


# -- the rest -------------------------------------------------------------------------------


def test_help_lists_every_command_and_exit_codes() -> None:
    result = run("--help")
    assert result.code == 0
    for command in (
        "bump",
        "bump-global",
        "revoke",
        "revoke-session",
        "status",
        "inspect",
        "stats",
        "export",
        "import",
        "demo",
    ):
        assert f"  {command} " in result.out
    assert "0 done or accepted, 1 refused or revoked, 2 usage or store error" in " ".join(result.out.split())
    assert run("--version").out.strip() == f"authx-epoch, version {authx_epoch.__version__}"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_demo_serves_and_the_cli_revokes_its_tokens(tmp_path: Path) -> None:
    """``authx-epoch demo`` runs the real demo server; a bump from another process logs its user out."""
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    port = _free_port()
    env = {**os.environ, "AUTHX_EPOCH_DEMO_SECRET": SECRET}
    log = tmp_path / "demo.log"
    with log.open("wb") as log_file:
        server = subprocess.Popen(
            [sys.executable, "-m", "authx_epoch", "demo", "--port", str(port), "--store", url],
            stdout=log_file,
            stderr=log_file,
            env=env,
        )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        with httpx.Client(base_url=base, timeout=5) as client:
            while True:
                try:
                    login = client.post("/login", json={"username": "alice", "password": "wonderland"})
                    break
                except httpx.TransportError:
                    assert server.poll() is None, log.read_text()
                    assert time.monotonic() < deadline, "the demo did not start"
                    select.select([], [], [], 0.1)  # waiting for another process to listen, not for a clock
            token = login.json()["access_token"]
            headers = {"Authorization": f"Bearer {token}"}
            assert client.get("/me", headers=headers).status_code == 200
            assert run("bump", "alice", "--reason", "demo", store=url).code == 0
            assert client.get("/me", headers=headers).status_code == 401
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert "Traceback" not in log.read_text()


# -- the page that documents all this -------------------------------------------------------

CLI_PAGE = Path(__file__).resolve().parent.parent / "docs" / "cli.md"


def test_every_command_and_exit_code_is_documented() -> None:
    page = CLI_PAGE.read_text()
    assert isinstance(cli, click.Group)
    for name in cli.commands:
        assert f"### {name}" in page or f"### export and {name}" in page or f"### {name} and" in page, name
    for code in ("| 0 |", "| 1 |", "| 2 |"):
        assert code in page


def test_documented_errors_are_what_the_command_prints(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each ``$ authx-epoch ...`` line of the page followed by an error gives exactly that stderr.

    The lines shown are the whole of stderr (the store line, warnings, the error); the commands
    run in a directory standing for the page's ``/srv/app``, holding an ``authx-epoch.db`` set up as
    ``install()`` sets it up, with no ``--store`` but the page's. The exit code is 2 unless the
    page shows another with ``$ echo $?`` right after the error.
    """
    monkeypatch.chdir(tmp_path)
    set_up("sqlite:///authx-epoch.db")
    (tmp_path / "alice.jwt").write_text("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2ln\n")
    lines = CLI_PAGE.read_text().replace("/srv/app", str(tmp_path)).splitlines()
    shown = []
    for index, command in enumerate(lines):
        if not command.startswith("$ authx-epoch "):
            continue
        end = index + 1
        while end < len(lines) and lines[end].startswith("authx-epoch: "):
            end += 1
        stderr = lines[index + 1 : end]
        if not stderr or not stderr[-1].startswith("authx-epoch: error: "):
            continue
        after = lines[end : end + 2]
        code = int(after[1]) if len(after) == 2 and after[0] == "$ echo $?" else 2
        shown.append((command[len("$ authx-epoch ") :], stderr, code))
    assert len(shown) >= 8
    assert {code for _, _, code in shown} == {1, 2}
    assert any("no global record" in stderr[-1] for _, stderr, _ in shown)
    for command, stderr, code in shown:
        result = invoke(*shlex.split(command))
        assert result.err.splitlines() == stderr, command
        assert result.code == code, command

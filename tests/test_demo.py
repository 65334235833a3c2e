"""The demo app: every route and every rejection, through real AuthX on a real SQLite file."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from authx_epoch.demo import DEMO_USERS, SECRET_ENV, create_app, main
from tests.conftest import FakeClock

pytestmark = [pytest.mark.anyio, pytest.mark.sqlite]

SECRET = "demo-test-secret-" + "x" * 32


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'demo.db'}"


@pytest.fixture
def app(store_url: str) -> FastAPI:
    return create_app(store_url, secret=SECRET)


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://demo") as http:
        yield http


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def login(client: httpx.AsyncClient, user: str = "alice", password: str | None = None) -> dict[str, Any]:
    response = await client.post("/login", json={"username": user, "password": password or DEMO_USERS[user]})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def me_status(client: httpx.AsyncClient, token: str) -> int:
    return (await client.get("/me", headers=bearer(token))).status_code


async def refresh_status(client: httpx.AsyncClient, refresh_token: str) -> int:
    return (await client.post("/refresh", headers=bearer(refresh_token))).status_code


def assert_authx_error(response: httpx.Response, status: int = 401) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"message", "error_type"}, body


async def test_login_returns_a_fresh_pair_with_one_session(client: httpx.AsyncClient) -> None:
    pair = await login(client)
    assert pair["token_type"] == "bearer"
    response = await client.get("/me", headers=bearer(pair["access_token"]))
    assert response.status_code == 200
    assert response.json() == {"uid": "alice", "session_id": pair["session_id"], "fresh": True}


@pytest.mark.parametrize(
    ("username", "password"), [("alice", "wrong"), ("nobody", "wonderland"), ("bob", DEMO_USERS["alice"])]
)
async def test_login_refuses_bad_credentials(client: httpx.AsyncClient, username: str, password: str) -> None:
    response = await client.post("/login", json={"username": username, "password": password})
    assert response.status_code == 401
    assert "access_token" not in response.text


@pytest.mark.parametrize("route", ["/me", "/sessions"])
async def test_protected_routes_refuse_a_missing_or_garbage_token(client: httpx.AsyncClient, route: str) -> None:
    assert_authx_error(await client.get(route))
    garbage = await client.get(route, headers=bearer("not.a.jwt"))
    assert garbage.status_code in (401, 422)
    assert set(garbage.json()) == {"message", "error_type"}


async def test_logout_revokes_that_token_only(client: httpx.AsyncClient) -> None:
    first, second = await login(client), await login(client)
    response = await client.post("/logout", headers=bearer(first["access_token"]))
    assert response.status_code == 200
    assert_authx_error(await client.get("/me", headers=bearer(first["access_token"])))
    assert_authx_error(await client.post("/logout", headers=bearer(first["access_token"])))
    assert await me_status(client, second["access_token"]) == 200
    # The refresh token of the same login was not revoked: logout is "this token".
    assert await refresh_status(client, first["refresh_token"]) == 200


async def test_logout_all_revokes_every_token_and_a_new_login_works(client: httpx.AsyncClient) -> None:
    laptop, phone = await login(client), await login(client)
    refreshed = (await client.post("/refresh", headers=bearer(phone["refresh_token"]))).json()["access_token"]
    bob = await login(client, "bob")
    response = await client.post("/logout-all", headers=bearer(laptop["access_token"]))
    assert response.status_code == 200
    for token in (laptop["access_token"], phone["access_token"], refreshed):
        assert_authx_error(await client.get("/me", headers=bearer(token)))
    for token in (laptop["refresh_token"], phone["refresh_token"]):
        assert_authx_error(await client.post("/refresh", headers=bearer(token)))
    assert await me_status(client, bob["access_token"]) == 200
    again = await login(client)
    assert await me_status(client, again["access_token"]) == 200
    sessions = (await client.get("/sessions", headers=bearer(again["access_token"]))).json()
    assert [session["session_id"] for session in sessions] == [again["session_id"]]


async def test_change_password_needs_a_fresh_token(client: httpx.AsyncClient) -> None:
    pair = await login(client)
    stale = (await client.post("/refresh", headers=bearer(pair["refresh_token"]))).json()["access_token"]
    body = {"current_password": DEMO_USERS["alice"], "new_password": "looking-glass"}
    assert_authx_error(await client.post("/change-password", json=body, headers=bearer(stale)))
    assert_authx_error(await client.post("/change-password", json=body, headers=bearer(pair["refresh_token"])))
    # Nothing changed: the old password still works.
    assert await me_status(client, (await login(client))["access_token"]) == 200


async def test_change_password_refuses_a_wrong_current_password(client: httpx.AsyncClient) -> None:
    pair = await login(client)
    body = {"current_password": "guess", "new_password": "looking-glass"}
    response = await client.post("/change-password", json=body, headers=bearer(pair["access_token"]))
    assert response.status_code == 403
    assert await me_status(client, pair["access_token"]) == 200


async def test_change_password_kills_old_tokens_and_returns_a_working_pair(client: httpx.AsyncClient) -> None:
    old, other = await login(client), await login(client)
    body = {"current_password": DEMO_USERS["alice"], "new_password": "looking-glass"}
    response = await client.post("/change-password", json=body, headers=bearer(old["access_token"]))
    assert response.status_code == 200
    new = response.json()
    for token in (old["access_token"], other["access_token"]):
        assert_authx_error(await client.get("/me", headers=bearer(token)))
    for token in (old["refresh_token"], other["refresh_token"]):
        assert_authx_error(await client.post("/refresh", headers=bearer(token)))
    assert (await client.get("/me", headers=bearer(new["access_token"]))).json()["fresh"] is True
    assert await refresh_status(client, new["refresh_token"]) == 200
    old_password = await client.post("/login", json={"username": "alice", "password": DEMO_USERS["alice"]})
    assert old_password.status_code == 401
    assert await me_status(client, (await login(client, password="looking-glass"))["access_token"]) == 200


async def test_refresh_keeps_the_session_and_is_not_fresh(client: httpx.AsyncClient) -> None:
    pair = await login(client)
    response = await client.post("/refresh", headers=bearer(pair["refresh_token"]))
    assert response.status_code == 200
    access = response.json()["access_token"]
    assert (await client.get("/me", headers=bearer(access))).json() == {
        "uid": "alice",
        "session_id": pair["session_id"],
        "fresh": False,
    }


async def test_refresh_rotates_the_pair_and_a_replay_revokes_the_session(store_url: str) -> None:
    clock = FakeClock()
    app = create_app(store_url, secret=SECRET, clock=clock)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://demo") as client:
        pair = await login(client)
        rotated = await client.post("/refresh", headers=bearer(pair["refresh_token"]))
        assert rotated.status_code == 200
        new = rotated.json()
        assert new["session_id"] == pair["session_id"]
        assert new["refresh_token"] != pair["refresh_token"]
        assert await me_status(client, new["access_token"]) == 200
        clock.advance(60)
        replay = await client.post("/refresh", headers=bearer(pair["refresh_token"]))
        assert_authx_error(replay)
        assert replay.json()["error_type"] == "RefreshTokenReusedError"
        for token in (new["access_token"], pair["access_token"]):
            assert_authx_error(await client.get("/me", headers=bearer(token)))
        assert_authx_error(await client.post("/refresh", headers=bearer(new["refresh_token"])))
        other = await login(client)
        assert await me_status(client, other["access_token"]) == 200


async def test_refresh_and_access_tokens_are_not_interchangeable(client: httpx.AsyncClient) -> None:
    pair = await login(client)
    assert_authx_error(await client.post("/refresh", headers=bearer(pair["access_token"])))
    assert_authx_error(await client.get("/me", headers=bearer(pair["refresh_token"])))


async def test_logout_session_kills_its_access_and_refresh_tokens(client: httpx.AsyncClient) -> None:
    laptop, phone = await login(client), await login(client)
    refreshed = (await client.post("/refresh", headers=bearer(laptop["refresh_token"]))).json()["access_token"]
    response = await client.post("/logout-session", headers=bearer(laptop["access_token"]))
    assert response.status_code == 200
    assert_authx_error(await client.get("/me", headers=bearer(laptop["access_token"])))
    assert_authx_error(await client.get("/me", headers=bearer(refreshed)))
    assert_authx_error(await client.post("/refresh", headers=bearer(laptop["refresh_token"])))
    assert await me_status(client, phone["access_token"]) == 200
    assert await refresh_status(client, phone["refresh_token"]) == 200
    sessions = (await client.get("/sessions", headers=bearer(phone["access_token"]))).json()
    assert [session["session_id"] for session in sessions] == [phone["session_id"]]


async def test_sessions_lists_only_the_callers_sessions(client: httpx.AsyncClient) -> None:
    first, second = await login(client), await login(client)
    await login(client, "bob")
    sessions = (await client.get("/sessions", headers=bearer(first["access_token"]))).json()
    assert sorted(session["session_id"] for session in sessions) == sorted([first["session_id"], second["session_id"]])
    assert {session["uid"] for session in sessions} == {"alice"}


async def test_revocations_survive_a_restart_on_the_same_store(store_url: str) -> None:
    before = create_app(store_url, secret=SECRET)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=before), base_url="http://demo") as client:
        revoked, kept = await login(client), await login(client, "bob")
        assert (await client.post("/logout-all", headers=bearer(revoked["access_token"]))).status_code == 200
    after = create_app(store_url, secret=SECRET)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=after), base_url="http://demo") as client:
        assert_authx_error(await client.get("/me", headers=bearer(revoked["access_token"])))
        assert await me_status(client, kept["access_token"]) == 200


def test_without_a_configured_secret_a_random_one_is_used_and_said(
    store_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv(SECRET_ENV, raising=False)
    create_app(store_url)
    assert SECRET_ENV in capsys.readouterr().err


async def test_the_secret_comes_from_the_environment(store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SECRET_ENV, SECRET)
    signed_by_env = create_app(store_url)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=signed_by_env), base_url="http://demo") as client:
        token = (await login(client))["access_token"]
    # Another key is another realm: it gets a store of its own (on one store, install() refuses it).
    other = create_app("memory://", secret="another-secret-" + "y" * 32)
    same = create_app(store_url, secret=SECRET)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=other), base_url="http://demo") as client:
        # A signature made with another key: AuthX 1.7.1 answers its own 422 JWTDecodeError.
        assert_authx_error(await client.get("/me", headers=bearer(token)), 422)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=same), base_url="http://demo") as client:
        assert await me_status(client, token) == 200


def test_a_bad_store_url_exits_with_a_message(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--store", "bogus://nowhere"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "bogus://nowhere" in err
    assert "Traceback" not in err


def test_swagger_ui_is_served(app: FastAPI) -> None:
    paths = set(app.openapi()["paths"])
    assert {"/login", "/me", "/logout", "/logout-all", "/change-password", "/refresh", "/logout-session"} <= paths
    assert "/sessions" in paths


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def _running_demo(tmp_path: Path, port: int) -> Iterator[list[str]]:
    """Run the demo in a subprocess; the yielded list receives its whole output once it has stopped."""
    env = {**os.environ, SECRET_ENV: SECRET}
    process = subprocess.Popen(
        [sys.executable, "-m", "authx_epoch.demo", "--port", str(port), "--store", f"sqlite:///{tmp_path / 'p.db'}"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output: list[str] = []
    try:
        yield output
    finally:
        process.terminate()
        try:
            out, _ = process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            out, _ = process.communicate(timeout=10)
        output.append(out)


def _wait_for_docs(base: str) -> None:
    deadline = time.monotonic() + 30
    status = None
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.TransportError):
            status = httpx.get(f"{base}/docs", timeout=2).status_code
            if status == 200:
                return
        time.sleep(0.1)  # polling a real server started in another process; there is no clock to inject
    raise AssertionError(f"the demo did not answer /docs in 30 s (last status {status})")


@pytest.mark.slow
def test_python_dash_m_demo_serves_swagger_and_never_logs_tokens(tmp_path: Path) -> None:
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    with _running_demo(tmp_path, port) as output:
        _wait_for_docs(base)
        pair = httpx.post(f"{base}/login", json={"username": "alice", "password": DEMO_USERS["alice"]}).json()
        assert httpx.get(f"{base}/me", headers=bearer(pair["access_token"])).status_code == 200
        assert httpx.post(f"{base}/logout-all", headers=bearer(pair["access_token"])).status_code == 200
        assert httpx.get(f"{base}/me", headers=bearer(pair["access_token"])).status_code == 401
    logged = "".join(output)
    assert "/docs" in logged
    assert pair["access_token"] not in logged
    assert pair["refresh_token"] not in logged


ROOT = Path(__file__).resolve().parent.parent


def _readme_walk_through(base: str) -> str:
    section = (ROOT / "README.md").read_text().split("## The demo, with curl", 1)[1].split("\n## ", 1)[0]
    block = section.split("```bash\n", 1)[1].split("```", 1)[0]
    assert "B=http://127.0.0.1:8000\n" in block
    return block.replace("B=http://127.0.0.1:8000\n", f"B={base}\n", 1)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("curl") is None, reason="the README's walk-through needs curl")
def test_the_readme_curl_walk_through_runs_twice_against_one_demo(tmp_path: Path) -> None:
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    walk = _readme_walk_through(base)
    # What the README says each step prints: the error types in its comments, the status codes
    # after the curl lines that print one.
    expected_errors = re.findall(r'"error_type":"(\w+)"', walk)
    expected_codes = re.findall(r"%\{http_code\}.*#\s*(\d{3})", walk)
    assert len(expected_errors) >= 5
    assert len(expected_codes) >= 4
    with _running_demo(tmp_path, port):
        _wait_for_docs(base)
        for run in (1, 2):
            done = subprocess.run(["bash", "-c", walk], capture_output=True, text=True, timeout=120, cwd=tmp_path)
            assert done.returncode == 0, f"run {run}: {done.stderr}"
            assert done.stderr == "", f"run {run}: {done.stderr}"
            assert re.findall(r'"error_type":"(\w+)"', done.stdout) == expected_errors, f"run {run}: {done.stdout}"
            # curl -w prints a code at the end of a line, after a body that has no newline of its own.
            codes = re.findall(r"(?:^|(?<=[}\]]))(\d{3})$", done.stdout, re.MULTILINE)
            assert codes == expected_codes, f"run {run}: {done.stdout}"


def test_scripts_demo_help_names_scripts_demo(tmp_path: Path) -> None:
    # Run the command scripts/demo runs (its venv set-up aside) and read its --help.
    script = (ROOT / "scripts" / "demo").read_text()
    (command,) = re.findall(r"^exec python -c '([^']+)' \"\$@\"$", script, re.MULTILINE)
    shown = subprocess.run(
        [sys.executable, "-c", command, "--help"], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith("usage: scripts/demo ")
    assert "--port" in shown.stdout


def test_a_busy_port_says_how_to_pick_another(capsys: pytest.CaptureFixture[str], store_url: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(SystemExit) as exited:
            main(["--port", str(port), "--store", store_url], prog="scripts/demo")
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert f"port {port} on 127.0.0.1 is already in use" in err
    assert f"--port {port + 1}" in err
    assert err.strip().splitlines()[-1].startswith("scripts/demo: ")
    assert "Traceback" not in err

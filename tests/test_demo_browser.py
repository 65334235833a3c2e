"""The demo's browser page (``/browser/``) in a real browser: cookies, CSRF, logout per device and everywhere.

The demo runs under uvicorn on a free loopback port (a SQLite store in the test's directory), and
Debian's Chromium, driven by Playwright, plays two devices of one user: two browser contexts, each
with its own cookie jar. Every request the browser makes to anything but the demo is refused.
Skipped without Chromium unless ``AUTHX_EPOCH_REQUIRE_BROWSER=1``; with
``AUTHX_EPOCH_SCREENSHOTS=<dir>`` a screenshot of both devices is saved there after each step.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from authx_epoch.demo import DEMO_USERS, create_app, listen
from tests.test_docs_site import CHROMIUM, CHROMIUM_ARGS, _need_browser

pytestmark = pytest.mark.slow

SECRET = "demo-browser-secret-" + "x" * 32
ACCESS, REFRESH = "access_token_cookie", "refresh_token_cookie"
ACCESS_CSRF, REFRESH_CSRF = "csrf_access_token", "csrf_refresh_token"


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[str]:
    """The demo app served by uvicorn in a thread; yields its base URL, stops it and closes its store."""
    import uvicorn

    app = create_app(f"sqlite:///{tmp_path / 'demo.db'}", secret=SECRET)
    sock = listen("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        while not server.started:  # uvicorn says when it listens; nothing to wait for with Playwright yet
            assert thread.is_alive(), "uvicorn stopped before it started"
            thread.join(timeout=0.01)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
        app.state.authx_epoch.sync.close()
    assert not thread.is_alive(), "uvicorn did not stop"


class Device:
    """One browser context (its own cookie jar) showing the demo's page."""

    def __init__(self, browser: Any, base: str, name: str) -> None:
        self.name = name
        self.base = base
        self.context = browser.new_context(viewport={"width": 900, "height": 700})
        # The demo, and nothing else.
        self.context.route("**/*", self._only_demo)
        self.refused: list[str] = []
        self.page = self.context.new_page()
        self.page.goto(f"{base}/browser/")

    def _only_demo(self, route: Any) -> None:
        if route.request.url.startswith(self.base + "/"):
            route.continue_()
        else:
            self.refused.append(route.request.url)
            route.abort()

    def press(self, button: str, status: int) -> str:
        """Click a button of the page, wait for its line in the log, check its status; return the line."""
        from playwright.sync_api import expect

        lines = self.page.locator("#log li")
        before = lines.count()
        self.page.click(f"#do-{button}")
        expect(lines).to_have_count(before + 1)
        line = lines.nth(before)
        expect(line).to_have_attribute("data-status", str(status))
        return str(line.text_content())

    def login(self, user: str = "alice") -> str:
        """Log in through the form."""
        self.page.fill("input[name=username]", user)
        self.page.fill("input[name=password]", DEMO_USERS[user])
        return self.press("login", 200)

    def cookies(self) -> dict[str, dict[str, Any]]:
        """The cookies the browser keeps for the demo, by name."""
        return {cookie["name"]: dict(cookie) for cookie in self.context.cookies(self.base + "/browser/refresh")}

    def post(self, path: str, headers: dict[str, str], label: str) -> int:
        """POST from the page's own script with exactly these headers (logged on the page); the status."""
        lines = self.page.locator("#log li")
        before = lines.count()
        self.page.evaluate(
            "([path, headers, label]) => call(label, path, {method: 'POST', headers})", [path, headers, label]
        )
        self.page.locator("#log li").nth(before).wait_for()
        return int(str(lines.nth(before).get_attribute("data-status")))


def test_two_devices_log_in_refresh_and_log_out_one_then_everywhere(demo: str, tmp_path: Path) -> None:
    sync_playwright = _need_browser()
    shots_dir = os.environ.get("AUTHX_EPOCH_SCREENSHOTS")
    shots = Path(shots_dir) if shots_dir else None
    step = 0

    def shoot(name: str, *devices: Device) -> None:
        nonlocal step
        step += 1
        if shots is not None:
            shots.mkdir(parents=True, exist_ok=True)
            for device in devices:
                device.page.screenshot(path=str(shots / f"browser-{step:02d}-{name}-{device.name}.png"), full_page=True)

    with sync_playwright() as playwright, httpx.Client(base_url=demo) as api:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            a = Device(browser, demo, "laptop")
            b = Device(browser, demo, "phone")
            try:
                _play(a, b, api, shoot)
            finally:
                a.context.close()
                b.context.close()
            assert not a.refused + b.refused, f"the page reached beyond the demo: {a.refused + b.refused}"
        finally:
            browser.close()


def _play(a: Device, b: Device, api: httpx.Client, shoot: Any) -> None:
    # 1. Both devices log in: two sessions of alice.
    assert "alice" in a.login()
    assert "alice" in b.login()
    shoot("logged-in", a, b)

    # 2. The cookies as the browser keeps them: the tokens HttpOnly and SameSite=Strict, the refresh
    # token sent to the refresh route only, the CSRF cookies readable by the page's script.
    jar = a.cookies()
    assert set(jar) == {ACCESS, REFRESH, ACCESS_CSRF, REFRESH_CSRF}, jar
    for name in (ACCESS, REFRESH):
        assert jar[name]["httpOnly"] is True, jar[name]
    for name in (ACCESS_CSRF, REFRESH_CSRF):
        assert jar[name]["httpOnly"] is False, jar[name]
    assert {cookie["sameSite"] for cookie in jar.values()} == {"Strict"}
    assert jar[REFRESH]["path"] == "/browser/refresh"
    assert {jar[name]["path"] for name in (ACCESS, ACCESS_CSRF, REFRESH_CSRF)} == {"/browser/"}
    readable = a.page.evaluate("document.cookie")
    assert {part.split("=")[0] for part in readable.split("; ")} == {ACCESS_CSRF, REFRESH_CSRF}
    assert jar[ACCESS]["value"] != b.cookies()[ACCESS]["value"]

    # 3. Who am I: a protected GET; each device is its own session.
    me_a, me_b = a.press("me", 200), b.press("me", 200)
    assert '"uid":"alice"' in me_a
    assert '"uid":"alice"' in me_b
    session_a = me_a.split('"session_id":"')[1].split('"')[0]
    assert session_a not in me_b
    shoot("who-am-i", a, b)

    # 4. Refresh with the CSRF header: a new pair in new cookies, the same session.
    before = a.cookies()
    assert session_a in a.press("refresh", 200)
    after = a.cookies()
    assert after[REFRESH]["value"] != before[REFRESH]["value"]
    assert after[ACCESS]["value"] != before[ACCESS]["value"]
    assert after[REFRESH]["httpOnly"] is True
    assert after[REFRESH]["path"] == "/browser/refresh"
    assert session_a in a.press("me", 200)
    shoot("refreshed", a)

    # 5. Without the CSRF header (what a cross-site form would send) or with a wrong one, the
    # cookies alone rotate nothing and log nothing out; the cookies stay as they were.
    csrf_access = after[ACCESS_CSRF]["value"]
    assert a.post("refresh", {}, "refresh without X-CSRF-TOKEN") == 401
    assert a.post("refresh", {"X-CSRF-TOKEN": "forged"}, "refresh with a forged X-CSRF-TOKEN") == 401
    # The access cookie's CSRF value is not the refresh cookie's.
    assert a.post("refresh", {"X-CSRF-TOKEN": csrf_access}, "refresh with the access CSRF value") == 401
    assert a.post("logout", {}, "logout without X-CSRF-TOKEN") == 401
    assert a.post("logout-all", {"X-CSRF-TOKEN": "forged"}, "logout-all with a forged X-CSRF-TOKEN") == 401
    assert a.cookies()[REFRESH]["value"] == after[REFRESH]["value"]
    a.press("me", 200)
    shoot("csrf-refused", a)

    # 6. Log out the laptop: its cookies are cleared, and put back they are refused (the session is
    # revoked, access and refresh token alike). The phone keeps working, refresh included.
    kept = list(a.context.cookies())
    a.press("logout", 200)
    assert set(a.cookies()).isdisjoint({ACCESS, REFRESH})
    a.press("me", 401)
    a.context.add_cookies(kept)
    assert "RevokedTokenError" in a.press("me", 401)
    assert "RevokedTokenError" in a.press("refresh", 401)
    b.press("me", 200)
    b.press("refresh", 200)
    b.press("me", 200)
    shoot("laptop-logged-out", a, b)

    # 7. The laptop logs in again, and alice also holds an API token (the demo's JSON API). Log
    # out everywhere from the phone: one epoch bump, and every one of them is refused.
    a.context.clear_cookies()
    a.login()
    a.press("me", 200)
    pair = api.post("/login", json={"username": "alice", "password": DEMO_USERS["alice"]}).json()
    bearer = {"Authorization": f"Bearer {pair['access_token']}"}
    assert api.get("/me", headers=bearer).status_code == 200
    kept = list(b.context.cookies())
    b.press("logout-all", 200)
    assert "RevokedTokenError" in a.press("me", 401)
    assert "RevokedTokenError" in a.press("refresh", 401)
    b.context.add_cookies(kept)
    assert "RevokedTokenError" in b.press("me", 401)
    assert "RevokedTokenError" in b.press("refresh", 401)
    assert api.get("/me", headers=bearer).status_code == 401
    shoot("logged-out-everywhere", a, b)

    # 8. Logging in again works: a new session after the bump.
    b.context.clear_cookies()
    b.login()
    b.press("me", 200)
    shoot("logged-in-again", b)

"""The built docs site: it builds with --strict, reads offline, draws its diagrams, fits its code.

The site is built once for the module. The browser tests drive Debian's Chromium through
Playwright (``apt-get install chromium``; Playwright comes with the dev extra and never downloads
a browser here): they are skipped when Chromium is absent, unless ``AUTHX_EPOCH_REQUIRE_BROWSER=1``
makes that a failure. Every request the browser makes to anything but the loopback server is
refused and recorded, so "offline" is what is tested.
"""

from __future__ import annotations

import functools
import html.parser
import http.server
import importlib.util
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("AUTHX_EPOCH_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# Desktop width: Material shows both sidebars from 1220 px, so a code box is as narrow as it gets.
VIEWPORT = {"width": 1280, "height": 900}
DIAGRAM_PAGES = ["index.html", "sessions/index.html"]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("mkdocs") is None, reason="mkdocs is not installed (the dev extra)"),
]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    built = tmp_path_factory.mktemp("docs") / "site"
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(built), "--config-file", "mkdocs.yml"],
        cwd=ROOT,
        # Material's notice about its end of life: the decision is in CONTRIBUTING.md.
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "WARNING" not in result.stderr, result.stderr
    return built


def _pages(site: Path) -> list[Path]:
    return sorted(path for path in site.rglob("index.html") if path.parent.name != "search")


def test_the_site_builds_strict_with_the_reference_and_inline_code(site: Path) -> None:
    reference = (site / "reference" / "index.html").read_text()
    for name in ("install", "EpochRevocation", "SyncEpochRevocation", "ClaimNames", "StoreUnavailableError"):
        assert name in reference, f"the API reference lacks {name}"
    quick_start = (site / "quickstart" / "index.html").read_text()
    assert "bump_user_epoch" in quick_start
    assert '<span class="filename">quickstart.py</span>' in quick_start


class _Assets(html.parser.HTMLParser):
    """What a page makes the browser load by itself: scripts, stylesheets, images, frames."""

    def __init__(self) -> None:
        super().__init__()
        self.loaded: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag in ("script", "img", "iframe", "audio", "video", "source") and found.get("src"):
            self.loaded.append(str(found["src"]))
        if tag == "link" and found.get("href") and (found.get("rel") or "") in ("stylesheet", "preload", "icon"):
            self.loaded.append(str(found["href"]))


def _external(url: str) -> bool:
    return bool(re.match(r"^(https?:)?//", url))


def test_no_page_loads_anything_from_another_host(site: Path) -> None:
    # No browser needed: every script, stylesheet and image a page names is a file of the site,
    # and no stylesheet imports a web font or anything else from a CDN.
    offenders = []
    for page in _pages(site):
        parser = _Assets()
        parser.feed(page.read_text())
        offenders += [f"{page.relative_to(site)}: {url}" for url in parser.loaded if _external(url)]
    for stylesheet in site.rglob("*.css"):
        offenders += [
            f"{stylesheet.relative_to(site)}: {url}"
            for url in re.findall(r"(?:@import\s+|url\()\s*['\"]?([^'\")\s]+)", stylesheet.read_text())
            if _external(url)
        ]
    assert not offenders, "the site loads from other hosts (it must read offline):\n" + "\n".join(offenders)


def test_pages_with_a_diagram_load_mermaid_from_the_site_before_the_theme(site: Path) -> None:
    # Material's bundle fetches mermaid from unpkg.com unless a global `mermaid` exists when it
    # meets a diagram; the site's own copy, loaded first, is that global.
    pages_with_diagrams = [page for page in _pages(site) if 'class="mermaid"' in page.read_text()]
    assert sorted(str(page.relative_to(site)) for page in pages_with_diagrams) == sorted(DIAGRAM_PAGES)
    for page in pages_with_diagrams:
        text = page.read_text()
        local = re.search(r'<script src="([^"]*assets/javascripts/mermaid-[\d.]+\.min\.js)"', text)
        assert local, f"{page.relative_to(site)} does not load the site's mermaid"
        assert (page.parent / local[1]).resolve().is_file()
        assert text.index(local[0]) < text.index("assets/javascripts/bundle."), "mermaid must come before the bundle"
    without = site / "quickstart" / "index.html"
    assert "mermaid-" not in without.read_text(), "only pages with a diagram pay for mermaid"


# The browser tests.


def _need_browser() -> Any:
    missing = None
    if not os.access(CHROMIUM, os.X_OK):
        missing = f"no Chromium at {CHROMIUM} (apt-get install chromium, or set AUTHX_EPOCH_CHROMIUM)"
    elif importlib.util.find_spec("playwright") is None:
        missing = "Playwright is not installed (the dev extra)"
    if missing:
        if os.environ.get("AUTHX_EPOCH_REQUIRE_BROWSER") == "1":
            pytest.fail(f"{missing} (AUTHX_EPOCH_REQUIRE_BROWSER=1)", pytrace=False)
        pytest.skip(missing)
    from playwright.sync_api import sync_playwright

    return sync_playwright


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def served(site: Path) -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(site)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser_page(served: str) -> Iterator[tuple[Any, list[str]]]:
    """A Chromium page that can reach the loopback server and nothing else; the list collects what it tried."""
    sync_playwright = _need_browser()
    refused: list[str] = []

    def only_loopback(route: Any) -> None:
        if route.request.url.startswith(served + "/"):
            route.continue_()
        else:
            refused.append(route.request.url)
            route.abort()

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport=VIEWPORT)
            # Material draws a diagram in a closed shadow root; open it, so the test can look inside.
            page.add_init_script(
                "const attach = Element.prototype.attachShadow;"
                "Element.prototype.attachShadow = function (init) {"
                " return attach.call(this, { ...init, mode: 'open' }); };"
            )
            page.route("**/*", only_loopback)
            yield page, refused
        finally:
            browser.close()


@pytest.mark.parametrize("path", DIAGRAM_PAGES)
def test_diagrams_are_drawn_offline(browser_page: tuple[Any, list[str]], served: str, path: str) -> None:
    page, refused = browser_page
    refused.clear()
    page.goto(f"{served}/{path.removesuffix('index.html')}")
    page.wait_for_function(
        "() => [...document.querySelectorAll('div.mermaid')].length > 0 && "
        "[...document.querySelectorAll('div.mermaid')].every(d => d.shadowRoot && d.shadowRoot.querySelector('svg'))",
        timeout=30_000,
    )
    drawn = page.evaluate(
        "() => [...document.querySelectorAll('div.mermaid')].map(d => ({"
        " text: d.shadowRoot.querySelector('svg').textContent,"
        " height: d.getBoundingClientRect().height }))"
    )
    assert drawn
    for diagram in drawn:
        assert diagram["height"] > 200, drawn
        assert "sequenceDiagram" not in diagram["text"]
        assert "->>" not in diagram["text"]
    assert "sequenceDiagram" not in page.inner_text("body"), "a diagram is shown as its source text"
    assert not refused, f"the page tried to reach other hosts: {refused}"
    shots = Path(os.environ.get("AUTHX_EPOCH_SCREENSHOTS", "")) if os.environ.get("AUTHX_EPOCH_SCREENSHOTS") else None
    if shots is not None:
        shots.mkdir(parents=True, exist_ok=True)
        name = path.replace("/index.html", "").replace("index.html", "index") or "index"
        diagram = page.locator("div.mermaid").first
        diagram.scroll_into_view_if_needed()
        page.screenshot(path=str(shots / f"{name}-page.png"))
        diagram.screenshot(path=str(shots / f"{name}-diagram.png"))


def test_code_boxes_fit_without_scrolling(browser_page: tuple[Any, list[str]], served: str, site: Path) -> None:
    # At a desktop width no code box of any page scrolls sideways: Python examples are formatted
    # to 80 columns, console transcripts and plain text wrap (docs/assets/stylesheets/extra.css).
    page, refused = browser_page
    refused.clear()
    overflowing = []
    for built in _pages(site):
        path = built.relative_to(site).as_posix().removesuffix("index.html")
        page.goto(f"{served}/{path}")
        for box in page.evaluate(
            "() => [...document.querySelectorAll('pre > code')]"
            ".filter(code => code.scrollWidth > code.clientWidth + 1)"
            ".map(code => code.textContent.split('\\n').reduce((a, b) => (b.length > a.length ? b : a), ''))"
        ):
            overflowing.append(f"/{path}: {box.strip()[:100]}")
    assert not overflowing, "code boxes that scroll sideways at 1280 px:\n" + "\n".join(overflowing)
    assert not refused, f"pages tried to reach other hosts: {refused}"

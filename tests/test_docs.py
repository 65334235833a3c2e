"""The docs cannot rot: every sample is a file that runs here, and the site builds with --strict."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import re
import runpy
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
EXAMPLES = DOCS / "examples"
EXAMPLE_FILES = sorted(EXAMPLES.glob("*.py"))
PAGES = sorted(DOCS.rglob("*.md"))

# `--8<-- "file.py"` or `--8<-- "file.py:section"` inside a page.
SNIPPET = re.compile(r'^\s*--8<--\s+"([^":]+)(?::([\w-]+))?"\s*$', re.MULTILINE)
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def _snippet_references() -> list[tuple[Path, str, str | None]]:
    return [(page, name, section or None) for page in PAGES for name, section in SNIPPET.findall(page.read_text())]


def test_there_are_examples_and_pages() -> None:
    assert len(EXAMPLE_FILES) >= 10
    assert (DOCS / "index.md").exists()


@pytest.mark.parametrize("example", EXAMPLE_FILES, ids=[path.stem for path in EXAMPLE_FILES])
def test_example_runs(example: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Each example asserts its own story (logins, rejections, records) when run as a script.
    monkeypatch.chdir(tmp_path)
    namespace = runpy.run_path(str(example), run_name="__main__")
    assert namespace, f"{example.name} defines nothing"


def test_every_snippet_reference_resolves() -> None:
    references = _snippet_references()
    assert references, "no page includes an example"
    for page, name, section in references:
        path = EXAMPLES / name
        assert path.exists(), f"{page.relative_to(ROOT)} includes a missing file {name}"
        if section is not None:
            text = path.read_text()
            assert f"# --8<-- [start:{section}]" in text, f"{name} has no section {section!r}"
            assert f"# --8<-- [end:{section}]" in text, f"{name} does not close section {section!r}"


def test_every_example_is_shown_somewhere() -> None:
    shown = {name for _, name, _ in _snippet_references()}
    assert {path.name for path in EXAMPLE_FILES} <= shown


@pytest.mark.parametrize("page", PAGES, ids=[str(path.relative_to(DOCS)) for path in PAGES])
def test_python_samples_in_pages_are_included_files(page: Path) -> None:
    for language, body in FENCE.findall(page.read_text()):
        if language == "python":
            lines = [line for line in body.splitlines() if line.strip()]
            assert lines, f"{page.name} has an empty python block"
            assert all(SNIPPET.match(line) for line in lines), (
                f"{page.name} has inline Python; put it in docs/examples/ and include it"
            )


def _readme_quick_start() -> str:
    blocks = [body for language, body in FENCE.findall((ROOT / "README.md").read_text()) if language == "python"]
    assert len(blocks) == 1, "the README has exactly one Python sample: the quick start"
    return blocks[0]


def test_readme_quick_start_is_short() -> None:
    assert len(_readme_quick_start().strip().splitlines()) <= 15


def test_readme_quick_start_works(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, Any] = {"__name__": "readme_quick_start"}
    exec(compile(_readme_quick_start(), "README.md", "exec"), namespace)
    app, auth = namespace["app"], namespace["auth"]
    other_device = auth.create_access_token(uid="alice")

    async def scenario() -> None:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app") as client:
            token = (await client.post("/login")).json()["access_token"]
            headers = {"Authorization": f"Bearer {token}"}
            assert (await client.post("/logout-all", headers=headers)).status_code == 200
            again = await client.post("/logout-all", headers=headers)
            assert again.status_code == 401
            assert again.json()["error_type"] == "RevokedTokenError"
            other = await client.post("/logout-all", headers={"Authorization": f"Bearer {other_device}"})
            assert other.status_code == 401
            fresh = (await client.post("/login")).json()["access_token"]
            fresh_headers = {"Authorization": f"Bearer {fresh}"}
            assert (await client.post("/logout-all", headers=fresh_headers)).status_code == 200

    asyncio.run(scenario())
    assert (tmp_path / "revocation.db").exists()
    namespace["revocation"].store.close()


def test_readme_names_exactly_two_setup_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    setup = readme.split("## Set up from a fresh clone", 1)[1].split("\n## ", 1)[0]
    (block,) = [body for language, body in FENCE.findall(setup) if language == "bash"]
    commands = [line.split("#")[0].strip() for line in block.splitlines() if line.strip()]
    assert commands == ["scripts/demo", "scripts/test"]
    for command in commands:
        assert os.access(ROOT / command, os.X_OK), f"{command} is not executable"


def test_readme_links_to_existing_docs() -> None:
    readme = (ROOT / "README.md").read_text()
    links = re.findall(r"\]\((docs/[^)#]+)", readme)
    assert links
    for link in links:
        assert (ROOT / link).exists(), f"README links to a missing {link}"


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("mkdocs") is None, reason="mkdocs is not installed (the dev extra)")
def test_docs_site_builds_strict(tmp_path: Path) -> None:
    site = tmp_path / "site"
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site), "--config-file", "mkdocs.yml"],
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "WARNING" not in result.stderr, result.stderr
    reference = (site / "reference" / "index.html").read_text()
    for name in ("install", "EpochRevocation", "SyncEpochRevocation", "ClaimNames", "StoreUnavailableError"):
        assert name in reference, f"the API reference lacks {name}"
    quick_start = (site / "quickstart" / "index.html").read_text()
    assert "--8&lt;--" not in quick_start
    assert "--8<--" not in quick_start
    assert "bump_user_epoch" in quick_start
    assert 'class="mermaid"' in (site / "index.html").read_text()

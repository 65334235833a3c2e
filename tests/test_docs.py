"""The docs cannot rot: every Python sample is an example file, shown whole, that runs as shown.

Pages carry their code inline (so they read on a code host too); `scripts/sync_docs.py` copies
each file of docs/examples/ into the blocks that name it, and these tests fail when a block and
its file differ, when a shown block does not run on its own, or when install()'s reference
misses an argument. The built site is tested in tests/test_docs_site.py.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import importlib.util
import inspect
import os
import re
import runpy
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

import authx_epoch

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
EXAMPLES = DOCS / "examples"
EXAMPLE_FILES = sorted(EXAMPLES.glob("*.py"))
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)


def _load_sync_docs() -> ModuleType:
    spec = importlib.util.spec_from_file_location("sync_docs", ROOT / "scripts" / "sync_docs.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


sync_docs = _load_sync_docs()


def _shown_blocks() -> dict[str, list[Any]]:
    """Each example file's name -> the page blocks that show it."""
    shown: dict[str, list[Any]] = {}
    for page in sync_docs.pages():
        for block in sync_docs.shown_blocks(page):
            shown.setdefault(block.title, []).append(block)
    return shown


SHOWN = _shown_blocks()


def test_there_are_examples_and_pages() -> None:
    assert len(EXAMPLE_FILES) >= 10
    assert (DOCS / "index.md").exists()
    assert sum(len(blocks) for blocks in SHOWN.values()) >= len(EXAMPLE_FILES)


def test_every_python_block_on_a_page_is_its_example_file() -> None:
    # A block names its file (```python title="logout.py"), and shows all of it, as it is now.
    problems = sync_docs.problems()
    assert not problems, "\n".join([*problems, "run scripts/sync_docs.py to copy the files into the pages"])


def test_every_example_is_shown_somewhere() -> None:
    hidden = sorted({path.name for path in EXAMPLE_FILES} - set(SHOWN))
    assert not hidden, f"examples no page shows: {hidden}"


def test_the_sync_script_rewrites_a_stale_block(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "examples").mkdir()
    (tmp_path / "examples" / "hello.py").write_text('print("hello")\n')
    page = tmp_path / "page.md"
    page.write_text('Before.\n\n```python title="hello.py"\nprint("stale")\n```\n\nAfter.\n')
    monkeypatch.setattr(sync_docs, "DOCS", tmp_path)
    monkeypatch.setattr(sync_docs, "EXAMPLES", tmp_path / "examples")
    monkeypatch.setattr(sync_docs, "ROOT", tmp_path)
    assert sync_docs.main(["--check"]) == 1
    assert 'print("stale")' in page.read_text()
    assert sync_docs.main([]) == 0
    assert page.read_text() == 'Before.\n\n```python title="hello.py"\nprint("hello")\n```\n\nAfter.\n'
    assert sync_docs.main(["--check"]) == 0


def _needs_redis(text: str) -> bool:
    return "REDIS_URL" in text


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(path.name, marks=[pytest.mark.redis] if _needs_redis(path.read_text()) else [])
        for path in EXAMPLE_FILES
    ],
    ids=[path.stem for path in EXAMPLE_FILES],
)
def test_a_shown_example_runs_as_shown(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    # What a reader copies: the text of the page's block, saved as a file on its own in an empty
    # directory and run as a script. Each example asserts its own story (logins, rejections,
    # records), so a block that needs a name it does not define, or tells a story the library no
    # longer keeps, fails here.
    blocks = SHOWN.get(name)
    assert blocks, f"no page shows {name}"
    text = blocks[0].body
    if _needs_redis(text):
        monkeypatch.setenv("REDIS_URL", request.getfixturevalue("redis_url"))
    copied = tmp_path / name
    copied.write_text(text)
    monkeypatch.chdir(tmp_path)
    namespace = runpy.run_path(str(copied), run_name="__main__")
    assert namespace, f"{name} defines nothing"


def _render_default(value: object) -> str:
    """A default as the docs write it: the Python expression a reader would type."""
    if isinstance(value, dt.timedelta):
        seconds = value.total_seconds()
        return f"timedelta(seconds={int(seconds) if seconds.is_integer() else seconds})"
    if isinstance(value, str):
        return f'"{value}"'
    if value is None or isinstance(value, (bool, int, float)):
        return repr(value)
    if callable(value) and hasattr(value, "__module__") and hasattr(value, "__qualname__"):
        # A function of the library by its name (the table says what it does); others in full.
        ours = value.__module__.split(".")[0] == "authx_epoch"
        return value.__qualname__ if ours else f"{value.__module__}.{value.__qualname__}"
    raise AssertionError(f"teach _render_default how the docs should write {value!r}")


def _install_parameters() -> list[inspect.Parameter]:
    return list(inspect.signature(authx_epoch.install).parameters.values())


def test_install_md_documents_every_argument_with_its_default() -> None:
    # Reads install()'s signature: a new argument fails here until install.md has it.
    page = (DOCS / "install.md").read_text()
    rows = {}
    for line in page.splitlines():
        match = re.match(r"^\| `(\w+)` \| ([^|]*) \|", line)
        if match:
            rows[match[1]] = match[2]
    missing, wrong = [], []
    for parameter in _install_parameters():
        if parameter.default is inspect.Parameter.empty:
            continue  # auth: the instance to protect, described in the prose
        default = _render_default(parameter.default)
        if parameter.name not in rows:
            missing.append(f"| `{parameter.name}` | `{default}` | ... |")
        elif f"`{default}`" not in rows[parameter.name]:
            wrong.append(
                f"{parameter.name}: the table says {rows[parameter.name].strip()!r}, install() has `{default}`"
            )
    assert not missing, "install.md's table lacks arguments of install():\n" + "\n".join(missing)
    assert not wrong, "install.md's table has wrong defaults:\n" + "\n".join(wrong)


def test_install_md_opens_with_install_signature() -> None:
    lines = ["authx_epoch.install("]
    keyword_only = False
    for parameter in _install_parameters():
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY and not keyword_only:
            lines.append("    *,")
            keyword_only = True
        default = parameter.default
        rendered = "" if default is inspect.Parameter.empty else f"={_render_default(default)}"
        lines.append(f"    {parameter.name}{rendered},")
    lines.append(")")
    expected = "\n".join(lines) + "\n"
    first_block = FENCE.findall((DOCS / "install.md").read_text())[0][1]
    assert first_block == expected, f"install.md should open with:\n```text\n{expected}```"


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
    assert (tmp_path / "authx-epoch.db").exists()
    namespace["revocation"].store.close()


@pytest.mark.parametrize("page", ["README.md", "docs/quickstart.md"])
def test_the_quick_starts_warn_that_older_tokens_are_refused(page: str) -> None:
    text = " ".join((ROOT / page).read_text().split())
    assert "minted before `install()` are refused" in text, f"{page} must warn that older tokens are refused"
    assert "accept_unstamped_until" in text, f"{page} must name the migration window"


def test_the_docs_recommend_one_way_to_rotate_refresh_tokens() -> None:
    page = (DOCS / "scenarios" / "refresh-tokens.md").read_text()
    recommended = page.index("## Rotation: the recommended way")
    alternative = page.index("## The low-level alternative")
    assert recommended < page.index('title="refresh_tokens.py"') < alternative
    assert alternative < page.index('title="refresh_tokens_by_hand.py"')
    assert "create_token_pair" in (EXAMPLES / "refresh_tokens.py").read_text()
    assert "revocation.rotated_tokens" in (EXAMPLES / "refresh_tokens.py").read_text()
    assert "revoke_token" not in (EXAMPLES / "refresh_tokens.py").read_text()
    by_hand = (EXAMPLES / "refresh_tokens_by_hand.py").read_text()
    assert "Low-level alternative" in by_hand
    assert "Prefer create_token_pair" in by_hand


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

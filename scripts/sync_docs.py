#!/usr/bin/env python3
"""Copy each example file into the page blocks that show it, so pages read on a code host too.

A page shows an example as an ordinary fenced block whose title names the file:

    ```python title="logout.py"
    ...the whole of docs/examples/logout.py...
    ```

The file is the source: the tests run it, ruff lints it. This script rewrites every such block
from its file; `--check` changes nothing and exits 1 if a block differs from its file (the test
suite runs that check). Only the standard library: it runs with any Python 3.10+.

Usage: scripts/sync_docs.py [--check]
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
EXAMPLES = DOCS / "examples"

# A fenced Python block with a title: ```python title="name.py"  (other attributes may follow).
BLOCK = re.compile(
    r'^(?P<fence>```python[ \t]+title="(?P<title>[^"]+)"[^\n]*\n)(?P<body>.*?)^```[ \t]*$',
    re.MULTILINE | re.DOTALL,
)
# Any fenced block, to find Python blocks that name no file.
FENCE = re.compile(r"^```(?P<info>[^\n]*)\n(?P<body>.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)


@dataclass(frozen=True)
class ShownBlock:
    """One Python block of a page: the example file it names, and the text the page shows."""

    page: Path
    line: int
    title: str
    body: str

    @property
    def source(self) -> Path:
        """The example file the block names."""
        return EXAMPLES / self.title

    @property
    def where(self) -> str:
        """``page.md:line``, for messages."""
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def pages() -> list[Path]:
    """Every markdown page of the site."""
    return sorted(DOCS.rglob("*.md"))


def shown_blocks(page: Path) -> Iterator[ShownBlock]:
    """The titled Python blocks of ``page``, in order."""
    text = page.read_text(encoding="utf-8")
    for match in BLOCK.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        yield ShownBlock(page, line, match["title"], match["body"])


def untitled_python_blocks(page: Path) -> list[int]:
    """Line numbers of Python blocks that name no example file (not allowed on a page)."""
    text = page.read_text(encoding="utf-8")
    found = []
    for match in FENCE.finditer(text):
        info = match["info"].strip()
        if info.split(" ", 1)[0] in ("python", "py", "pycon") and 'title="' not in info:
            found.append(text.count("\n", 0, match.start()) + 1)
    return found


def problems() -> list[str]:
    """What is wrong between the pages and the example files, one line each; empty if in sync."""
    found = []
    for page in pages():
        for line in untitled_python_blocks(page):
            where = f"{page.relative_to(ROOT)}:{line}"
            found.append(f'{where}: a Python block must name its example file: ```python title="name.py"')
        for block in shown_blocks(page):
            if not block.source.is_file():
                found.append(f"{block.where}: no such example: docs/examples/{block.title}")
            elif block.body != block.source.read_text(encoding="utf-8"):
                found.append(f"{block.where}: differs from docs/examples/{block.title}")
    return found


def sync() -> list[Path]:
    """Rewrite every titled block from its file; return the pages that changed."""
    changed = []
    for page in pages():
        text = page.read_text(encoding="utf-8")

        def fill(match: re.Match[str]) -> str:
            source = EXAMPLES / match["title"]
            if not source.is_file():
                return match[0]  # reported by problems()
            return f"{match['fence']}{source.read_text(encoding='utf-8')}```"

        new = BLOCK.sub(fill, text)
        if new != text:
            page.write_text(new, encoding="utf-8")
            changed.append(page)
    return changed


def main(argv: list[str] | None = None) -> int:
    """Rewrite the blocks (or, with --check, report what differs) and return the exit code."""
    parser = argparse.ArgumentParser(
        prog="scripts/sync_docs.py",
        description="Copy docs/examples/*.py into the page blocks that show them.",
    )
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a block is stale")
    args = parser.parse_args(argv)
    if not args.check:
        for page in sync():
            print(f"updated {page.relative_to(ROOT)}")
    left = problems()
    for problem in left:
        print(problem, file=sys.stderr)
    if left and args.check:
        print("run scripts/sync_docs.py to copy the example files into the pages", file=sys.stderr)
    return 1 if left else 0


if __name__ == "__main__":
    sys.exit(main())

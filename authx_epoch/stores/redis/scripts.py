"""The Lua scripts that make a Redis store's writes atomic, and one call of a script. Pure, no I/O.

Each script is ``lua/common.lua`` followed by its own file, loaded once from the package and sent
by digest (``EVALSHA``); ``requests.evalsha`` sends the source when the server has lost it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources
from typing import Union


@dataclass(frozen=True)
class Script:
    """A Lua script and its SHA-1, as ``EVALSHA`` needs it."""

    name: str
    source: str
    sha: str


def _load_scripts() -> dict[str, Script]:
    folder = resources.files("authx_epoch.stores.redis").joinpath("lua")
    common = folder.joinpath("common.lua").read_text(encoding="utf-8")
    scripts = {}
    for name in ("setup", "issue", "bump", "revoke", "replace", "session", "check", "view", "versions"):
        source = common + "\n" + folder.joinpath(f"{name}.lua").read_text(encoding="utf-8")
        scripts[name] = Script(name, source, hashlib.sha1(source.encode()).hexdigest())
    return scripts


SCRIPTS = _load_scripts()
SETUP, ISSUE, BUMP, REVOKE, REPLACE, SESSION, CHECK, VIEW, VERSIONS = (
    SCRIPTS[name] for name in ("setup", "issue", "bump", "revoke", "replace", "session", "check", "view", "versions")
)


@dataclass(frozen=True)
class Call:
    """One script invocation: which script, on which keys, with which arguments."""

    script: Script
    keys: list[bytes]
    args: list[Union[bytes, str]]

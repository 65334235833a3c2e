"""Reading the commands' arguments: times, claim names, tokens given on the command line or stdin."""

from __future__ import annotations

import datetime as dt
import re
import sys
import time
from typing import Any, Optional

import click

from authx_epoch.claims import ClaimNames, decode_payload_segment
from authx_epoch.cli.context import (
    CommandError,
)
from authx_epoch.errors import ConfigurationError

# -- argument types --------------------------------------------------------------------------


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_instant(text: str) -> float:
    """Parse a point in time: Unix seconds, ISO 8601 with a time zone, or ``+30m`` / ``+12h`` / ``+7d`` from now.

    Raises:
        ValueError: ``text`` is none of those, or an ISO 8601 time without a time zone.
    """
    text = text.strip()
    relative = re.fullmatch(r"\+(\d+(?:\.\d+)?)([smhd]?)", text)
    if relative:
        return time.time() + float(relative.group(1)) * _UNITS[relative.group(2) or "s"]
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        if seconds != seconds or seconds in (float("inf"), float("-inf")):
            raise ValueError(f"{text!r} is not a finite time")
        return seconds
    try:
        moment = dt.datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
    except ValueError:
        raise ValueError(f"{text!r} is not a time: give Unix seconds, ISO 8601 (2030-01-31T12:00:00Z) or +7d") from None
    if moment.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone: add Z or an offset such as +02:00")
    return moment.timestamp()


def instant_option(ctx: click.Context, param: click.Parameter, value: Optional[str]) -> Optional[float]:
    """Read a ``TIME`` option (see ``parse_instant``); a bad one is a usage error."""
    if value is None:
        return None
    try:
        return parse_instant(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def claim_names_option(ctx: click.Context, param: click.Parameter, value: Optional[str]) -> Optional[ClaimNames]:
    """Read ``--claim-names U,G,S`` into the app's stamp claim names."""
    if value is None:
        return None
    parts = [part.strip() for part in value.split(",")]
    if len(parts) != 3:
        raise click.BadParameter("give three names: USER_EPOCH,GLOBAL_EPOCH,SESSION_ID (e.g. uep,gep,session_id)")
    try:
        return ClaimNames(*parts)
    except ConfigurationError as exc:
        raise click.BadParameter(str(exc)) from exc


def non_empty(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """Refuse an empty or blank argument as a usage error."""
    if not value.strip():
        raise click.BadParameter("must not be empty")
    return value


def token_argument(token: str) -> str:
    """Read ``-`` from stdin (keeps tokens out of shell history) and drop a ``Bearer`` prefix."""
    if token == "-":
        token = sys.stdin.readline()
    token = token.strip()
    if token.lower().startswith("bearer "):
        token = token[len("bearer ") :].strip()
    return token


def token_payload(token: str) -> dict[str, Any]:
    """The JSON payload of ``token``, read without its signature; a malformed token is a ``CommandError``."""
    payload = decode_payload_segment(token)
    if payload is None:
        raise CommandError(
            "malformed token: not a compact JWT (header.payload.signature with a JSON payload, at most 16 KiB)"
        )
    return payload

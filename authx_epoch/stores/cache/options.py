"""The cache's options: their defaults, their bounds, and reading them from a store URL."""

from __future__ import annotations

from typing import Any, Optional

from authx_epoch.errors import ConfigurationError
from authx_epoch.stores.url import CACHE_OPTIONS, StoreURL

#: How old (seconds) a confirmed part may be and still answer a check.
DEFAULT_STALENESS = 1.0
#: How many users (and, separately, sessions) one process keeps.
DEFAULT_MAX_ENTRIES = 10_000
#: The largest staleness accepted: beyond a minute a cache would hide revocations for too long.
MAX_STALENESS = 60.0

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def valid_staleness(value: object) -> float:
    """``value`` as a staleness in seconds.

    Raises:
        ConfigurationError: It is not a number of seconds in (0, ``MAX_STALENESS``].
    """
    try:
        seconds = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        seconds = -1.0
    if not 0 < seconds <= MAX_STALENESS:
        raise ConfigurationError(
            f"cache staleness must be a number of seconds in (0, {MAX_STALENESS:g}], got {value!r}"
        )
    return seconds


def valid_max_entries(value: object) -> int:
    """``value`` as a count of entries.

    Raises:
        ConfigurationError: It is not a whole number >= 1.
    """
    try:
        count = int(str(value)) if not isinstance(value, bool) else -1
    except ValueError:
        count = -1
    if count < 1:
        raise ConfigurationError(f"cache max_entries must be a whole number >= 1, got {value!r}")
    return count


def cache_options(url: StoreURL) -> Optional[dict[str, Any]]:
    """The keyword arguments for ``LocalCache`` a store URL asks for, or ``None`` when the cache is off.

    Raises:
        ConfigurationError: An option has a bad value, or a ``cache_*`` option is given without
            ``local_cache=1`` (it would silently do nothing).
    """
    ours = {name: url.options[name] for name in CACHE_OPTIONS if name in url.options}
    if not ours:
        return None
    switch = ours.pop("local_cache", "0").strip().lower()
    if switch not in _TRUE + _FALSE:
        raise ConfigurationError(f"local_cache must be 1 or 0 in the store URL, got {switch!r}")
    if switch in _FALSE and ours:
        raise ConfigurationError(f"{', '.join(sorted(ours))} needs local_cache=1 in the store URL")
    if switch in _FALSE:
        return None
    options: dict[str, Any] = {}
    if "cache_staleness" in ours:
        options["staleness"] = valid_staleness(ours["cache_staleness"])
    if "cache_max_entries" in ours:
        options["max_entries"] = valid_max_entries(ours["cache_max_entries"])
    return options

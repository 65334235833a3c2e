"""Store URLs: one type, parsed and checked in one place.

``open_store``, ``RedisStore.from_url``, the local cache and the CLI all read a store URL through
``StoreURL.parse``: the scheme, where the data is, authx-epoch's own options and the driver's.
Every option is checked against the ones its scheme takes, so a mistyped option is an error that
lists them (``?prefx=app`` does not silently open another key space).

| URL | store |
|---|---|
| ``memory://`` | this process only |
| ``sqlite:///relative.db``, ``sqlite:////absolute/path.db`` | one file, every process of a machine |
| ``redis://[user:password@]host:port/db``, ``rediss://`` (TLS), ``unix:///path.sock?db=0`` | one Redis |
| ``redis+cluster://h1:p1,h2:p2``, ``rediss+cluster://`` | Redis Cluster |
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Optional
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from authx_epoch.errors import ConfigurationError

#: The schemes a store URL may have.
SCHEMES = ("memory", "sqlite", "redis", "rediss", "unix", "redis+cluster", "rediss+cluster")
REDIS_SCHEMES = ("redis", "rediss", "unix")
CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")

#: authx-epoch's own options of a Redis URL (the store's and the local cache's).
REDIS_OPTIONS = ("prefix", "socket_timeout", "socket_connect_timeout")
CACHE_OPTIONS = ("local_cache", "cache_staleness", "cache_max_entries")


@lru_cache(maxsize=1)
def _redis_driver_options() -> frozenset[str]:
    """The query options redis-py's ``from_url`` understands on a single Redis (imported only for Redis URLs)."""
    import redis.connection

    names = set(redis.connection.URL_QUERY_ARGUMENT_PARSERS)
    for connection in (redis.connection.AbstractConnection, redis.connection.Connection):
        names.update(inspect.signature(connection.__init__).parameters)
    names.update(("ssl_cert_reqs", "ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_check_hostname", "path"))
    names.discard("self")
    return frozenset(name for name in names if not name.startswith("_"))


def password_of(url: str) -> Optional[str]:
    """The password written in ``url`` (as written, percent-encoding included), or ``None``.

    What to scrub from a text that may quote the URL (a driver's error message). The password is
    read as the driver reads it: the userinfo ends at the last ``@`` of the netloc. Any text is
    accepted: one that does not parse as a URL carries no password that can be found.
    """
    try:
        netloc = urlsplit(url).netloc
    except ValueError:
        return None
    userinfo, at, _ = netloc.rpartition("@")
    password = userinfo.partition(":")[2]
    return password if at and password else None


def redact(url: str) -> str:
    """The URL without its password, for messages and logs."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    userinfo, hosts = parts.netloc.rsplit("@", 1)
    user = userinfo.partition(":")[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{hosts}"))


@dataclass(frozen=True)
class StoreURL:
    """A store URL, parsed and checked.

    Attributes:
        scheme: One of ``SCHEMES`` (lower case).
        url: The URL as given; it may carry a password, so print ``redacted`` instead.
        options: authx-epoch's own options (``prefix``, timeouts, the local cache's).
        driver_options: The options left for the driver (redis-py), in their order.
    """

    scheme: str
    url: str
    options: Mapping[str, str] = field(default_factory=dict)
    driver_options: tuple[tuple[str, str], ...] = ()

    @classmethod
    def parse(cls, url: str) -> StoreURL:
        """Parse and check ``url``.

        Raises:
            ConfigurationError: The scheme is unknown, the URL lacks what its scheme needs, or an
                option is unknown for its scheme (the message lists the ones it takes).
        """
        if not isinstance(url, str):
            raise ConfigurationError(f"a store URL is a string, got {type(url).__name__}")
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in SCHEMES:
            schemes = ", ".join(f"{name}:///" if name == "sqlite" else f"{name}://" for name in SCHEMES)
            raise ConfigurationError(f"unknown store URL {redact(url)!r}: the schemes known are {schemes}")
        query = parse_qsl(parts.query, keep_blank_values=True)
        if scheme == "memory":
            if url.lower().rstrip("/") != "memory:":
                raise ConfigurationError(f"memory:// takes no host, path or options, got {redact(url)!r}")
            return cls(scheme, url)
        if scheme == "sqlite":
            if not url.lower().startswith("sqlite:///") or not unquote(parts.path.lstrip("/")):
                raise ConfigurationError(
                    "a SQLite store URL needs a path: 'sqlite:///relative.db' or 'sqlite:////absolute/path.db', "
                    f"got {url!r}"
                )
            cls._refuse_unknown(url, scheme, [name for name, _ in query], ())
            return cls(scheme, url)
        own = (*REDIS_OPTIONS, *CACHE_OPTIONS)
        known = own if scheme in CLUSTER_SCHEMES else (*own, *sorted(_redis_driver_options()))
        cls._refuse_unknown(url, scheme, [name for name, _ in query], known)
        options = {name: value for name, value in query if name in own}
        driver = tuple((name, value) for name, value in query if name not in own)
        return cls(scheme, url, options, driver)

    @staticmethod
    def _refuse_unknown(url: str, scheme: str, names: list[str], known: tuple[str, ...]) -> None:
        for name in names:
            if name in known:
                continue
            close = difflib.get_close_matches(name, known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            listed = ", ".join(known) if known else "none"
            raise ConfigurationError(
                f"unknown option {name!r} in the store URL {redact(url)!r}{hint}; a {scheme}:// URL takes: {listed}"
            )

    @property
    def kind(self) -> str:
        """The store it names: ``memory``, ``sqlite``, ``redis`` or ``redis+cluster``."""
        if self.scheme in CLUSTER_SCHEMES:
            return "redis+cluster"
        if self.scheme in REDIS_SCHEMES:
            return "redis"
        return self.scheme

    @property
    def redacted(self) -> str:
        """The URL without its password."""
        return redact(self.url)

    @property
    def path(self) -> str:
        """The file of a ``sqlite:///`` URL, as given (relative to the working directory, or absolute)."""
        return unquote(urlsplit(self.url).path[1:]) if self.scheme == "sqlite" else ""

    @property
    def driver_url(self) -> str:
        """The URL for the driver: scheme, credentials, host, path and the driver's own options only."""
        parts = urlsplit(self.url)
        query = urlencode(self.driver_options)
        # Not urlunsplit: it turns unix:///path into unix:/path, which redis-py rejects.
        return f"{parts.scheme}://{parts.netloc}{parts.path}" + (f"?{query}" if query else "")

    def option(self, name: str) -> Optional[str]:
        """The value of one of authx-epoch's own options, or ``None``."""
        return self.options.get(name)


__all__ = [
    "CACHE_OPTIONS",
    "CLUSTER_SCHEMES",
    "REDIS_OPTIONS",
    "REDIS_SCHEMES",
    "SCHEMES",
    "StoreURL",
    "password_of",
    "redact",
]

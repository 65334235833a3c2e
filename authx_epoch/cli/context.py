"""What a command works on: its settings, shared options, the store and service it opens, its errors and answer."""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO, Any, NoReturn, Optional, TypeVar

import click

from authx_epoch.claims import ClaimNames
from authx_epoch.cli.output import (
    resolved,
    where,
)
from authx_epoch.errors import ConfigurationError
from authx_epoch.integrations.authx import DEFAULT_STORE
from authx_epoch.revocation import EpochRevocation
from authx_epoch.stores import ROOT_NAMESPACE, Store, check_namespace, open_store
from authx_epoch.stores.url import StoreURL, password_of

#: The environment variable read when ``--store`` is not given.
STORE_ENV = "AUTHX_EPOCH_STORE"
#: The store used when neither ``--store`` nor ``AUTHX_EPOCH_STORE`` names one: ``install()``'s default.
DEFAULT_STORE_URL = DEFAULT_STORE
#: The environment variable read when ``--namespace`` is not given.
NAMESPACE_ENV = "AUTHX_EPOCH_NAMESPACE"
#: Stores with at least this many entries get a progress bar on export and import (on a terminal).
PROGRESS_THRESHOLD = 1000

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_ERROR = 2

_F = TypeVar("_F", bound=Callable[..., Any])


# -- errors ----------------------------------------------------------------------------------


def redact(text: str, url: Optional[str]) -> str:
    """Return ``text`` with the password of ``url`` (if it has one) replaced by ``***``."""
    password = password_of(url) if url else None
    return text.replace(password, "***") if password else text


class CommandError(click.ClickException):
    """A one-line error that ends the command with exit code 2."""

    exit_code = EXIT_ERROR

    def show(self, file: Optional[IO[Any]] = None) -> None:
        """Print the message as one line on stderr."""
        message = " ".join(self.format_message().split())
        click.echo(f"authx-epoch: error: {message}", err=True)


class RefusedError(CommandError):
    """A one-line error for a refusal (exit code 1): ``import`` of a file that is not a snapshot it reads."""

    exit_code = EXIT_REFUSED


# -- settings and shared options -------------------------------------------------------------


@dataclass
class Settings:
    """What the group's and the command's options chose, and the store the command opened."""

    store_url: Optional[str] = None
    as_json: bool = False
    namespace: str = ROOT_NAMESPACE
    store: Optional[Store] = None


def namespace_option(ctx: click.Context, param: click.Parameter, value: Optional[str]) -> Optional[str]:
    """Check a ``--namespace`` value; a bad name is a usage error."""
    if value is None:
        return None
    try:
        return check_namespace(value)
    except ConfigurationError as exc:
        raise click.BadParameter(str(exc)) from None


_NAMESPACE_HELP = f"The namespace to work in (default: ${NAMESPACE_ENV}, else the root namespace)."


def common_options(func: _F) -> _F:
    """Accept ``--store``, ``--namespace`` and ``--json`` after the command name too, so both orders work."""

    @click.option(
        "--store",
        "store_url",
        metavar="URL",
        default=None,
        help=f"Store URL (default: ${STORE_ENV}, else {DEFAULT_STORE_URL}).",
    )
    @click.option("--namespace", metavar="NS", default=None, callback=namespace_option, help=_NAMESPACE_HELP)
    @click.option("--json", "as_json", is_flag=True, default=False, help="Print one JSON object for scripts.")
    @functools.wraps(func)
    def wrapper(*args: Any, store_url: Optional[str], namespace: Optional[str], as_json: bool, **kwargs: Any) -> Any:
        settings = click.get_current_context().ensure_object(Settings)
        if store_url:
            settings.store_url = store_url
        if namespace is not None:
            settings.namespace = namespace
        if as_json:
            settings.as_json = True
        return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def create_option(func: _F) -> _F:
    """The ``--create`` flag of the commands that write."""
    return click.option(
        "--create",
        is_flag=True,
        help="Write even though no application set this store up (a new SQLite file is created).",
    )(func)


def current_settings() -> Settings:
    """The settings of the command being run."""
    return click.get_current_context().ensure_object(Settings)


def open_command_store(*, write: bool = False, create: bool = False) -> Store:
    """Open the store the command works on, say on stderr which one, and refuse the wrong one.

    A SQLite file that does not exist is refused (and not created) unless ``create``; a write
    command (``write``) on a store with no global record, which no application ever set up, is
    refused unless ``create``: it would claim success while every application kept accepting.
    """
    ctx = click.get_current_context()
    settings = current_settings()
    url = settings.store_url or DEFAULT_STORE_URL
    parsed = StoreURL.parse(url)
    if parsed.kind == "sqlite" and not create and not os.path.exists(parsed.path):
        # Opening would create an empty store and every command would "succeed" on it.
        raise CommandError(
            f"no SQLite store at {os.path.abspath(parsed.path)} (the file does not exist; the current directory "
            f"is {os.getcwd()}): give the application's store with --store URL or {STORE_ENV} "
            "(sqlite:////absolute/path.db)" + (", or pass --create to make a new one" if write else "")
        )
    store = open_store(url, namespace=settings.namespace)
    ctx.call_on_close(store.sync.close)
    settings.store = store
    click.echo(f"authx-epoch: store {resolved(store)}", err=True)
    if store.sync.kind == "memory":
        click.echo(
            "authx-epoch: note: a memory:// store lives only as long as this command; use SQLite or Redis",
            err=True,
        )
    elif service_for(store).sync.get_global_record() is None:
        if write and not create:
            raise CommandError(
                f"refused: {resolved(store)} has no global record, so no application set it up "
                "(a forgotten ?prefix=, another Redis db, another SQLite file or directory, a mistyped "
                "--namespace) or its state was lost; nothing was written. Give the store and namespace the "
                "application uses, or pass --create to write here anyway"
            )
        if not create:
            click.echo(
                f"authx-epoch: warning: {where(store)} has no global record: no application has set it up "
                "(check --store and --namespace), or its state was lost (every stamped token is then rejected "
                "as lost_state)",
                err=True,
            )
    return store


def service_for(store: Store, claims: Optional[ClaimNames] = None, **options: Any) -> EpochRevocation:
    """The service over ``store`` with the library's defaults (leeway, lifetimes) and no verifier."""
    # No verifier: the CLI has no signing key, so tokens are judged on their claims alone.
    return EpochRevocation(store, claims=claims, **options)


def emit(data: dict[str, Any], human: str) -> None:
    """Print the command's answer: ``human`` text, or ``data`` as one JSON object with ``--json``."""
    store = current_settings().store
    if store is not None:
        # Every JSON answer says where it was found or done.
        data = {**data, "location": store.location, "namespace": store.namespace}
    click.echo(json.dumps(data, separators=(",", ":")) if current_settings().as_json else human)


@contextmanager
def progress(total: int, label: str) -> Iterator[Callable[[int], None]]:
    """A progress bar on stderr for long runs on a terminal; yields the function that advances it."""
    # Only on a terminal: a bar in a log file or a pipe is noise.
    if total < PROGRESS_THRESHOLD or not sys.stderr.isatty():
        yield lambda done: None
        return
    with click.progressbar(length=total, label=label, file=sys.stderr) as bar:
        yield bar.update


def confirm(question: str) -> bool:
    """Ask a yes/no ``question``; only ``y`` or ``yes`` is a yes."""
    # Asked on stderr, so that stdout carries only the command's result.
    click.echo(f"{question} [y/N]: ", nl=False, err=True)
    return sys.stdin.readline().strip().lower() in ("y", "yes")


def exit_with(code: int) -> NoReturn:
    """End the command with exit ``code`` (no message)."""
    raise click.exceptions.Exit(code)

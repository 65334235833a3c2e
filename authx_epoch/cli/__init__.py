"""``authx-epoch``: the operator's command line, for incident response without writing code.

Every command works on the store named by ``--store URL`` or the ``AUTHX_EPOCH_STORE``
environment variable, the same URLs ``install()`` takes, and without either on ``install()``'s
default, ``sqlite:///authx-epoch.db`` in the working directory; in the namespace named by
``--namespace NS`` or ``AUTHX_EPOCH_NAMESPACE`` (the root namespace by default). Output is for
people by default and one JSON object per command with ``--json``. Exit codes:

* 0: done, or the token is accepted;
* 1: the token is refused (revoked or expired), the operator declined a confirmation, or
  ``import`` refused a file that is not a snapshot it can read (foreign, damaged, newer);
* 2: a usage error, a bad store URL, an unreachable store, a SQLite file that does not exist, a
  write to a store no application set up (without ``--create``), a malformed token, a missing or
  unreadable file.

Every command that opens a store first prints one line on stderr naming it: its location (no
password) and the namespace.

Errors are one line on stderr, never a traceback.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, Optional

import click

from authx_epoch import __version__
from authx_epoch.cli.admin import demo, export, import_, stats, status
from authx_epoch.cli.context import (
    DEFAULT_STORE_URL,
    EXIT_ERROR,
    EXIT_OK,
    EXIT_REFUSED,
    NAMESPACE_ENV,
    PROGRESS_THRESHOLD,
    STORE_ENV,
    CommandError,
    Settings,
    namespace_option,
    redact,
)
from authx_epoch.cli.tokens import bump, bump_global, inspect, revoke, revoke_session
from authx_epoch.errors import AuthxEpochError
from authx_epoch.stores import ROOT_NAMESPACE


class _Cli(click.Group):
    """The command group; turns every library or OS error into a ``CommandError``."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except CommandError as exc:
            raise type(exc)(redact(exc.message, _url(ctx))) from exc.__cause__
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except AuthxEpochError as exc:
            raise CommandError(redact(str(exc), _url(ctx))) from exc
        except OSError as exc:
            where = f" ({exc.filename})" if exc.filename else ""
            raise CommandError(f"{exc.strerror or exc}{where}") from exc
        except Exception as exc:
            # Driver errors can quote the URL they were given, password included.
            raise CommandError(redact(f"unexpected {type(exc).__name__}: {exc}", _url(ctx))) from exc


def _url(ctx: click.Context) -> Optional[str]:
    settings = ctx.find_object(Settings)
    return settings.store_url if settings is not None else None


# -- commands --------------------------------------------------------------------------------


@click.group(cls=_Cli, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--store",
    "store_url",
    envvar=STORE_ENV,
    metavar="URL",
    help=f"Store URL (or ${STORE_ENV}; default: {DEFAULT_STORE_URL}, install()'s default).",
)
@click.option(
    "--namespace",
    envvar=NAMESPACE_ENV,
    metavar="NS",
    callback=namespace_option,
    help=f"The namespace to work in (or ${NAMESPACE_ENV}; default: the root namespace).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object for scripts.")
@click.option("-v", "--verbose", count=True, help="Show the library's log on stderr (-vv for debug).")
@click.version_option(__version__, prog_name="authx-epoch")
@click.pass_context
def cli(ctx: click.Context, store_url: Optional[str], namespace: Optional[str], as_json: bool, verbose: int) -> None:
    """Operate authx-epoch's revocation store: log users out, inspect tokens, back up state.

    Exit codes: 0 done or accepted, 1 refused or revoked, 2 usage or store error.
    """
    ctx.obj = Settings(store_url=store_url, as_json=as_json, namespace=namespace or ROOT_NAMESPACE)
    _configure_logging(ctx, verbose)


def _configure_logging(ctx: click.Context, verbose: int) -> None:
    logger = logging.getLogger("authx_epoch")
    saved = (logger.level, logger.propagate)
    if verbose:
        handler: logging.Handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("authx-epoch: %(levelname)s: %(message)s"))
        logger.setLevel(logging.DEBUG if verbose > 1 else logging.INFO)
    else:
        # The commands say what they did; the library's own log lines would repeat it.
        handler = logging.NullHandler()
    logger.addHandler(handler)
    # Some dependencies configure the root logger on import; keep one copy of each line.
    logger.propagate = False

    def restore() -> None:
        # The command may run inside a bigger program (tests, scripts calling main()).
        logger.removeHandler(handler)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]

    ctx.call_on_close(restore)


for _command in (bump, bump_global, demo, export, import_, inspect, revoke, revoke_session, stats, status):
    cli.add_command(_command)


def main(argv: Optional[list[str]] = None) -> None:
    """Run the command line (the ``authx-epoch`` console script)."""
    cli.main(args=argv, prog_name="authx-epoch")


__all__ = [
    "DEFAULT_STORE_URL",
    "EXIT_ERROR",
    "EXIT_OK",
    "EXIT_REFUSED",
    "NAMESPACE_ENV",
    "PROGRESS_THRESHOLD",
    "STORE_ENV",
    "cli",
    "main",
    "redact",
]

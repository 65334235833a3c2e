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

import datetime as dt
import functools
import json
import logging
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO, Any, NoReturn, Optional, TypeVar

import click

from authx_epoch import __version__
from authx_epoch.claims import ClaimNames, claims_from_mapping, decode_payload_segment
from authx_epoch.decision import Reason
from authx_epoch.errors import AuthxEpochError, ConfigurationError, InvalidArgumentError
from authx_epoch.integrations.authx import DEFAULT_STORE
from authx_epoch.records import EpochRecord, SnapshotEntry
from authx_epoch.revocation import MAX_ID_LENGTH, EpochRevocation
from authx_epoch.snapshot import read_snapshot, write_snapshot
from authx_epoch.stores import ROOT_NAMESPACE, Store, check_namespace, open_store
from authx_epoch.stores.url import StoreURL

#: The environment variable read when ``--store`` is not given.
STORE_ENV = "AUTHX_EPOCH_STORE"
#: The store used when neither ``--store`` nor ``AUTHX_EPOCH_STORE`` names one: ``install()``'s default.
DEFAULT_STORE_URL = DEFAULT_STORE
#: The environment variable read when ``--namespace`` is not given.
NAMESPACE_ENV = "AUTHX_EPOCH_NAMESPACE"
#: Stores with at least this many entries get a progress bar on export and import (on a terminal).
PROGRESS_THRESHOLD = 1000
#: How long past a token's expiry its revocation is kept; the same default as ``install()``.
REVOCATION_LEEWAY = 60.0

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_ERROR = 2

_F = TypeVar("_F", bound=Callable[..., Any])

_EXPLANATIONS = {
    Reason.ACCEPTED: "its stamps match the store and nothing revoked it",
    Reason.NOT_OURS: "it is not a token this library judges; AuthX decides alone",
    Reason.TOKEN_REVOKED: "its jti is in the revoked set",
    Reason.SESSION_REVOKED: "its session is revoked",
    Reason.SESSION_MISMATCH: "its session belongs to another user",
    Reason.MALFORMED_STAMP: "its epoch stamp is present but is not a valid epoch",
    Reason.GLOBAL_EPOCH: "the global epoch moved since it was minted (everyone was logged out)",
    Reason.USER_EPOCH: "its user's epoch moved since it was minted (the user was logged out everywhere)",
    Reason.LOST_STATE: "the store holds no record its stamp can match (state lost, expired or wiped); "
    "the user must log in again",
    Reason.UNSTAMPED: "it carries no epoch stamp and no migration window accepts it",
    Reason.LIFETIME_EXCEEDED: "it has no exp and is older than the longest token lifetime",
    Reason.FAIL_OPEN: "the store could not be read and fail-open let it through",
    Reason.STORE_UNAVAILABLE: "the store could not be read",
}


# -- errors ----------------------------------------------------------------------------------


_PASSWORD = re.compile(r"(?P<head>//[^/@:]*:)(?P<secret>[^@/]*)@")


def redact(text: str, url: Optional[str]) -> str:
    """Return ``text`` with the password of ``url`` (if it has one) replaced by ``***``."""
    if not url:
        return text
    match = _PASSWORD.search(url)
    if match is None or not match.group("secret"):
        return text
    return text.replace(match.group("secret"), "***")


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
    settings = ctx.find_object(_Settings)
    return settings.store_url if settings is not None else None


# -- settings and shared options -------------------------------------------------------------


@dataclass
class _Settings:
    store_url: Optional[str] = None
    as_json: bool = False
    namespace: str = ROOT_NAMESPACE
    store: Optional[Store] = None


def _namespace(ctx: click.Context, param: click.Parameter, value: Optional[str]) -> Optional[str]:
    if value is None:
        return None
    try:
        return check_namespace(value)
    except ConfigurationError as exc:
        raise click.BadParameter(str(exc)) from None


_NAMESPACE_HELP = f"The namespace to work in (default: ${NAMESPACE_ENV}, else the root namespace)."


def _common_options(func: _F) -> _F:
    """Accept ``--store``, ``--namespace`` and ``--json`` after the command name too, so both orders work."""

    @click.option(
        "--store",
        "store_url",
        metavar="URL",
        default=None,
        help=f"Store URL (default: ${STORE_ENV}, else {DEFAULT_STORE_URL}).",
    )
    @click.option("--namespace", metavar="NS", default=None, callback=_namespace, help=_NAMESPACE_HELP)
    @click.option("--json", "as_json", is_flag=True, default=False, help="Print one JSON object for scripts.")
    @functools.wraps(func)
    def wrapper(*args: Any, store_url: Optional[str], namespace: Optional[str], as_json: bool, **kwargs: Any) -> Any:
        settings = click.get_current_context().ensure_object(_Settings)
        if store_url:
            settings.store_url = store_url
        if namespace is not None:
            settings.namespace = namespace
        if as_json:
            settings.as_json = True
        return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def _create_option(func: _F) -> _F:
    """The ``--create`` flag of the commands that write."""
    return click.option(
        "--create",
        is_flag=True,
        help="Write even though no application set this store up (a new SQLite file is created).",
    )(func)


def _settings() -> _Settings:
    return click.get_current_context().ensure_object(_Settings)


def _open(*, write: bool = False, create: bool = False) -> Store:
    """Open the store the command works on, say on stderr which one, and refuse the wrong one.

    A SQLite file that does not exist is refused (and not created) unless ``create``; a write
    command (``write``) on a store with no global record, which no application ever set up, is
    refused unless ``create``: it would claim success while every application kept accepting.
    """
    ctx = click.get_current_context()
    settings = _settings()
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
    click.echo(f"authx-epoch: store {_resolved(store)}", err=True)
    now = time.time()
    if store.sync.kind == "memory":
        click.echo(
            "authx-epoch: note: a memory:// store lives only as long as this command; use SQLite or Redis",
            err=True,
        )
    elif store.sync.get_global(now) is None:
        if write and not create:
            raise CommandError(
                f"refused: {_resolved(store)} has no global record, so no application set it up "
                "(a forgotten ?prefix=, another Redis db, another SQLite file or directory, a mistyped "
                "--namespace) or its state was lost; nothing was written. Give the store and namespace the "
                "application uses, or pass --create to write here anyway"
            )
        if not create:
            click.echo(
                f"authx-epoch: warning: {_where(store)} has no global record: no application has set it up "
                "(check --store and --namespace), or its state was lost (every stamped token is then rejected "
                "as lost_state)",
                err=True,
            )
    return store


def _resolved(store: Store) -> str:
    """Where the command works: the store's location (no password) and the namespace."""
    return f"{store.location}, {_namespace_name(store.namespace)}"


def _namespace_name(namespace: str) -> str:
    return repr(namespace) if namespace else "the root namespace"


def _where(store: Store) -> str:
    """``this store`` and, away from the root, which namespace of it."""
    return "this store" if not store.namespace else f"namespace {store.namespace!r} of this store"


def _service(store: Store, claims: Optional[ClaimNames] = None, **options: Any) -> EpochRevocation:
    # No verifier: the CLI has no signing key, so tokens are judged on their claims alone.
    return EpochRevocation(store, claims=claims, **options)


# -- formatting ------------------------------------------------------------------------------


def _iso(ts: Optional[float]) -> str:
    if ts is None:
        return "never"
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).isoformat(timespec="seconds")


def _ago(ts: Optional[float], now: float) -> str:
    if ts is None:
        return "never"
    delta = now - ts
    amount = abs(delta)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if amount >= size:
            text = f"{amount / size:.0f} {unit}"
            break
    else:
        text = f"{amount:.0f} s"
    return f"{_iso(ts)} ({text} ago)" if delta >= 0 else f"{_iso(ts)} (in {text})"


def _record_json(record: Optional[EpochRecord]) -> Optional[dict[str, Any]]:
    if record is None:
        return None
    return {
        "epoch": record.epoch,
        "created_at": record.created_at,
        "bumped_at": record.bumped_at,
        "reason": record.reason,
        "expires_at": record.expires_at,
    }


def _record_lines(record: EpochRecord, now: float) -> list[tuple[str, str]]:
    return [
        ("epoch", str(record.epoch)),
        ("last moved", _ago(record.bumped_at, now)),
        ("reason", record.reason if record.reason is not None else "-"),
        ("created", _ago(record.created_at, now)),
        ("kept until", "forever" if record.expires_at is None else _ago(record.expires_at, now)),
    ]


def _table(rows: list[tuple[str, str]]) -> str:
    width = max(len(label) for label, _ in rows) + 1
    return "\n".join(f"{label + ':':<{width}} {value}" for label, value in rows)


def _emit(data: dict[str, Any], human: str) -> None:
    store = _settings().store
    if store is not None:
        # Every JSON answer says where it was found or done.
        data = {**data, "location": store.location, "namespace": store.namespace}
    click.echo(json.dumps(data, separators=(",", ":")) if _settings().as_json else human)


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


def _instant(ctx: click.Context, param: click.Parameter, value: Optional[str]) -> Optional[float]:
    if value is None:
        return None
    try:
        return parse_instant(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _claim_names(ctx: click.Context, param: click.Parameter, value: Optional[str]) -> Optional[ClaimNames]:
    if value is None:
        return None
    parts = [part.strip() for part in value.split(",")]
    if len(parts) != 3:
        raise click.BadParameter("give three names: USER_EPOCH,GLOBAL_EPOCH,SESSION_ID (e.g. uep,gep,session_id)")
    try:
        return ClaimNames(*parts)
    except ConfigurationError as exc:
        raise click.BadParameter(str(exc)) from exc


def _non_empty(ctx: click.Context, param: click.Parameter, value: str) -> str:
    if not value.strip():
        raise click.BadParameter("must not be empty")
    return value


def _token_argument(token: str) -> str:
    """Read ``-`` from stdin (keeps tokens out of shell history) and drop a ``Bearer`` prefix."""
    if token == "-":
        token = sys.stdin.readline()
    token = token.strip()
    if token.lower().startswith("bearer "):
        token = token[len("bearer ") :].strip()
    return token


def _payload(token: str) -> dict[str, Any]:
    payload = decode_payload_segment(token)
    if payload is None:
        raise CommandError(
            "malformed token: not a compact JWT (header.payload.signature with a JSON payload, at most 16 KiB)"
        )
    return payload


@contextmanager
def _progress(total: int, label: str) -> Iterator[Callable[[int], None]]:
    # Only on a terminal: a bar in a log file or a pipe is noise.
    if total < PROGRESS_THRESHOLD or not sys.stderr.isatty():
        yield lambda done: None
        return
    with click.progressbar(length=total, label=label, file=sys.stderr) as bar:
        yield bar.update


def _confirm(question: str) -> bool:
    # Asked on stderr, so that stdout carries only the command's result.
    click.echo(f"{question} [y/N]: ", nl=False, err=True)
    return sys.stdin.readline().strip().lower() in ("y", "yes")


def _exit(code: int) -> NoReturn:
    raise click.exceptions.Exit(code)


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
    callback=_namespace,
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
    ctx.obj = _Settings(store_url=store_url, as_json=as_json, namespace=namespace or ROOT_NAMESPACE)
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


@cli.command("bump")
@click.argument("user", callback=_non_empty)
@click.option("--reason", help="Why; kept in the user's record (audit trail).")
@_create_option
@_common_options
def bump(user: str, reason: Optional[str], create: bool) -> None:
    """Log USER out everywhere: every token of USER minted before now is rejected."""
    store = _open(write=True, create=create)
    record = _service(store).sync.bump_user_epoch(user, reason=reason)
    _emit(
        {"uid": user, "record": _record_json(record)},
        f"bumped {user!r}: epoch {record.epoch} at {_iso(record.bumped_at)}"
        + (f" (reason: {record.reason})" if record.reason else "")
        + f"\nevery token of {user!r} minted before now is rejected",
    )


@cli.command("bump-global")
@click.option("--reason", help="Why; kept in the global record (audit trail).")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation on a terminal.")
@_create_option
@_common_options
def bump_global(reason: Optional[str], yes: bool, create: bool) -> None:
    """Log every user out: every token minted before now is rejected."""
    store = _open(write=True, create=create)
    question = f"This logs out every user of every app using {_resolved(store)}. Go on?"
    if not yes and sys.stdin.isatty() and not _confirm(question):
        click.echo("nothing changed", err=True)
        _exit(EXIT_REFUSED)
    record = _service(store).sync.bump_global_epoch(reason=reason)
    _emit(
        {"record": _record_json(record), "namespace": store.namespace},
        f"bumped the global epoch of {_namespace_name(store.namespace)}: {record.epoch} at {_iso(record.bumped_at)}"
        + (f" (reason: {record.reason})" if record.reason else "")
        + "\nevery token of every user minted before now is rejected",
    )


@cli.command("revoke")
@click.argument("token", required=False)
@click.option("--jti", help="Revoke this token id instead of a whole token.")
@click.option("--user", "uid", help="The user the jti belongs to (with --jti).")
@click.option(
    "--expires-at", "expires_at", callback=_instant, metavar="TIME", help="When that token expires (with --jti)."
)
@_create_option
@_common_options
def revoke(
    token: Optional[str], jti: Optional[str], uid: Optional[str], expires_at: Optional[float], create: bool
) -> None:
    """Revoke one token until it expires: TOKEN ('-' reads it from stdin), or --jti J --user U --expires-at T.

    The signature of TOKEN is not verified: the CLI has no signing key.
    """
    by_id = (jti, uid, expires_at)
    if token is not None and any(value is not None for value in by_id):
        raise click.UsageError("give either TOKEN or --jti/--user/--expires-at, not both")
    now = time.time()
    if token is None:
        if jti is None or uid is None or expires_at is None:
            raise click.UsageError("give TOKEN, or all of --jti, --user and --expires-at")
        if not jti:
            raise click.UsageError("--jti must not be empty")
        target_uid, target_jti, exp = uid, jti, expires_at
    else:
        token = _token_argument(token)
        payload = _payload(token)
        sub, token_jti, raw_exp = payload.get("sub"), payload.get("jti"), payload.get("exp")
        if not isinstance(sub, str) or not isinstance(token_jti, str) or not token_jti:
            raise CommandError("the token has no string sub and jti, so it cannot be revoked alone; use bump USER")
        if isinstance(raw_exp, bool) or not isinstance(raw_exp, (int, float)):
            raise CommandError("the token has no exp; give --jti, --user and --expires-at, or use bump USER")
        target_uid, target_jti, exp = sub, token_jti, float(raw_exp)
    until = exp + REVOCATION_LEEWAY
    data: dict[str, Any] = {"uid": target_uid, "jti": target_jti, "expires_at": exp, "signature_verified": False}
    if until <= now:
        _open()
        _emit({**data, "revoked": False}, f"token {target_jti} of {target_uid!r} expired at {_iso(exp)}: nothing to do")
        return
    if len(target_uid) > MAX_ID_LENGTH or len(target_jti) > MAX_ID_LENGTH:
        raise CommandError(f"the user id or jti is longer than {MAX_ID_LENGTH} characters; nothing was revoked")
    store = _open(write=True, create=create)
    store.sync.revoke_token(target_uid, target_jti, until, now)
    _emit(
        {**data, "revoked": True},
        f"revoked token {target_jti} of {target_uid!r} until {_iso(until)}"
        + (" (signature not verified: the CLI has no signing key)" if token is not None else ""),
    )


@cli.command("revoke-session")
@click.argument("session_id", metavar="SID", callback=_non_empty)
@click.option(
    "--expires-at",
    "expires_at",
    callback=_instant,
    metavar="TIME",
    help="When the session's longest-lived token expires (default: 30 days from now).",
)
@_create_option
@_common_options
def revoke_session(session_id: str, expires_at: Optional[float], create: bool) -> None:
    """Revoke every token of session SID (access and refresh) until --expires-at.

    A SID the store knows no live session by is revoked all the same (harmless, idempotent), with a
    warning on stderr, as it is most often a typo; exit code 0.
    """
    store = _open(write=True, create=create)
    service = _service(store)
    known = service.sync.revoke_session(session_id, expires_at=expires_at)
    until = (expires_at if expires_at is not None else time.time() + 30 * 86400.0) + REVOCATION_LEEWAY
    if not known:
        click.echo(
            f"authx-epoch: warning: no live session {session_id!r} was known to this store (a typo, or a session "
            "already ended or expired); it is revoked anyway, in case a token of it is still around",
            err=True,
        )
    _emit(
        {"session_id": session_id, "expires_at": until, "known": known},
        f"revoked session {session_id!r} until {_iso(until)}",
    )


@cli.command("status")
@click.argument("user", callback=_non_empty)
@_common_options
def status(user: str) -> None:
    """Show USER's epoch: its value, when and why it last moved."""
    store = _open()
    service = _service(store)
    record = service.sync.get_user_record(user)
    global_ = service.sync.get_global_record()
    now = time.time()
    if record is None:
        human = (
            f"no record for {user!r}: no token of {user!r} was stamped on this store, or its record expired"
            " (a stamped token without a record is rejected as lost_state)"
        )
    else:
        human = _table([("user", user), *_record_lines(record, now)])
    if global_ is not None:
        human += f"\n\nglobal epoch {global_.epoch}, last moved {_ago(global_.bumped_at, now)}"
        if global_.reason:
            human += f" (reason: {global_.reason})"
    human += f"\nstore {store.location}, {_namespace_name(store.namespace)}"
    _emit(
        {
            "uid": user,
            "record": _record_json(record),
            "global": _record_json(global_),
            "namespace": store.namespace,
            "location": store.location,
        },
        human,
    )


def _store_line(record: Optional[EpochRecord], global_: Optional[EpochRecord]) -> str:
    line = f"user epoch {record.epoch if record else 'none'}"
    if record is not None and record.bumped_at is not None:
        line += f" (moved {_iso(record.bumped_at)}, reason: {record.reason or '-'})"
    return line + f", global epoch {global_.epoch if global_ else 'none'}"


@cli.command("inspect")
@click.argument("token")
@click.option(
    "--claim-names",
    "claims",
    callback=_claim_names,
    metavar="U,G,S",
    help="The app's stamp claim names if not the defaults: USER_EPOCH,GLOBAL_EPOCH,SESSION_ID.",
)
@click.option(
    "--accept-unstamped-until",
    callback=_instant,
    metavar="TIME",
    help="The app's migration window, if it has one, so unstamped tokens are judged as the app does.",
)
@_common_options
def inspect(token: str, claims: Optional[ClaimNames], accept_unstamped_until: Optional[float]) -> None:
    """Show the claims of TOKEN that matter and whether the check accepts it now, and if not, why.

    TOKEN may be '-' to read it from stdin. Its signature is not verified: the CLI has no signing key.
    Exit code 0 if accepted, 1 if revoked or expired.
    """
    token = _token_argument(token)
    names = claims or ClaimNames()
    parsed = claims_from_mapping(_payload(token), names)
    if parsed is None:
        raise CommandError("malformed token: it has no string sub, so it is not a token authx-epoch stamps")
    store = _open()
    window = None
    if accept_unstamped_until is not None:
        window = dt.datetime.fromtimestamp(accept_unstamped_until, dt.timezone.utc)
    service = _service(store, names, accept_unstamped_until=window)
    decision = service.sync.check(token)
    record = service.sync.get_user_record(parsed.sub)
    global_ = service.sync.get_global_record()
    now = time.time()
    expired = parsed.exp is not None and parsed.exp <= now
    refused = not decision.accepted or expired
    stamped = parsed.stamp.value == "stamped"
    explanation = _EXPLANATIONS.get(decision.reason, decision.reason.value)
    data = {
        "claims": {
            "sub": parsed.sub,
            "jti": parsed.jti,
            "session_id": parsed.session_id,
            "iat": parsed.iat,
            "exp": parsed.exp,
            "stamp": parsed.stamp.value,
            "user_epoch": parsed.user_epoch if stamped else None,
            "global_epoch": parsed.global_epoch if stamped else None,
        },
        "signature_verified": False,
        "accepted": decision.accepted,
        "reason": decision.reason.value,
        "explanation": explanation,
        "expired": expired,
        "store": {"user": _record_json(record), "global": _record_json(global_)},
    }
    stamps = f"user epoch {parsed.user_epoch}, global epoch {parsed.global_epoch}" if stamped else parsed.stamp.value
    verdict = "ACCEPTED" if decision.accepted else f"REJECTED ({decision.reason.value})"
    rows = [
        ("sub", parsed.sub),
        ("jti", parsed.jti or "-"),
        ("session", parsed.session_id or "-"),
        ("issued", _ago(parsed.iat, now) if parsed.iat is not None else "-"),
        ("expires", _ago(parsed.exp, now) if parsed.exp is not None else "-"),
        ("stamps", stamps),
        (
            "store",
            f"user epoch {record.epoch if record else 'none'}"
            + (
                f" (moved {_iso(record.bumped_at)}, reason: {record.reason or '-'})"
                if record and record.bumped_at
                else ""
            )
            + f", global epoch {global_.epoch if global_ else 'none'}",
        ),
        ("signature", "not verified (the CLI has no signing key)"),
        ("decision", f"{verdict}: {explanation}"),
    ]
    if expired:
        rows.append(("note", "the token has expired: AuthX refuses it whatever the revocation check says"))
    _emit(data, _table(rows))
    if refused:
        _exit(EXIT_REFUSED)


@cli.command("stats")
@_common_options
def stats() -> None:
    """Count what the store holds: users with records, unexpired revoked jtis and sessions."""
    store = _open()
    service = _service(store)
    counts = service.sync.stats()
    global_ = service.sync.get_global_record()
    now = time.time()
    _emit(
        {
            "kind": counts.kind,
            "users": counts.users,
            "revoked_tokens": counts.revoked_tokens,
            "revoked_sessions": counts.revoked_sessions,
            "global": _record_json(global_),
            "namespace": store.namespace,
            "location": store.location,
        },
        _table(
            [
                ("store", counts.kind),
                ("location", store.location),
                ("namespace", store.namespace or "(root)"),
                ("users with records", str(counts.users)),
                ("revoked tokens", str(counts.revoked_tokens)),
                ("revoked sessions", str(counts.revoked_sessions)),
                ("global epoch", str(global_.epoch) if global_ else "none (store not set up, or state lost)"),
                ("global last moved", _ago(global_.bumped_at, now) if global_ else "-"),
            ]
        ),
    )


def _tally(entries: list[SnapshotEntry]) -> dict[str, int]:
    counts = {"global": 0, "user": 0, "token": 0, "session": 0, "revoked_session": 0}
    for entry in entries:
        counts[entry.kind] = counts.get(entry.kind, 0) + 1
        # A session entry without its record (a version-1 snapshot) is a revoked session id.
        if entry.kind == "session" and (entry.session is None or entry.session.revoked):
            counts["revoked_session"] += 1
    return counts


@cli.command("export")
@click.argument("file", type=click.Path(dir_okay=False, writable=True))
@click.option("--force", is_flag=True, help="Overwrite FILE if it exists.")
@_common_options
def export(file: str, force: bool) -> None:
    """Write the whole revocation state to FILE as a msgpack snapshot (a backup, or to move stores)."""
    if os.path.exists(file) and not force:
        raise CommandError(f"{file!r} exists; pass --force to overwrite it")
    store = _open()
    now = time.time()
    entries = list(store.sync.export_entries(now))
    directory = os.path.dirname(os.path.abspath(file))
    # Write next to the target and rename: a crash never leaves half a snapshot under FILE's name.
    handle, temporary = tempfile.mkstemp(prefix=".authx-epoch-", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(handle, "wb") as stream, _progress(len(entries), "exporting") as advance:
            write_snapshot(
                stream, entries, source=store.sync.kind, now=now, progress=advance, namespace=store.namespace
            )
        os.replace(temporary, file)
    except BaseException:
        os.unlink(temporary)
        raise
    counts = _tally(entries)
    _emit(
        {
            "file": file,
            "entries": len(entries),
            "counts": counts,
            "source": store.sync.kind,
            "namespace": store.namespace,
        },
        f"exported {len(entries)} entries from {_namespace_name(store.namespace)} of the {store.sync.kind} store "
        f"to {file}: "
        f"{counts['user']} users, {counts['token']} revoked tokens, "
        f"{counts['session']} sessions ({counts['revoked_session']} revoked), "
        f"{'the' if counts['global'] else 'no'} global record",
    )


@cli.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, readable=True))
@_create_option
@_common_options
def import_(file: str, create: bool) -> None:
    """Merge the snapshot FILE into the store: epochs never move back, revocations never shorten.

    A file that is not a snapshot is refused (exit code 1) and nothing changes. A SQLite store is
    created, and a store no application set up written, only with --create.
    """
    with open(file, "rb") as stream:
        try:
            header, entries = read_snapshot(stream)
        except InvalidArgumentError as exc:
            raise RefusedError(str(exc)) from exc
    now = time.time()
    live = [entry for entry in entries if entry.expires_at is None or entry.expires_at > now]
    live = [entry for entry in live if entry.record is None or entry.record.is_live(now)]
    store = _open(write=True, create=create)
    imported = 0
    chunk = 1000
    with _progress(len(live), "importing") as advance:
        for start in range(0, len(live), chunk):
            part = live[start : start + chunk]
            imported += store.sync.import_entries(part, now)
            advance(len(part))
    skipped = len(entries) - len(live)
    _emit(
        {
            "file": file,
            "imported": imported,
            "skipped_expired": skipped,
            "source": header.source,
            "source_namespace": header.namespace,
            "namespace": store.namespace,
            "created_at": header.created_at,
            "counts": _tally(live),
        },
        f"imported {imported} entries into {_namespace_name(store.namespace)} of the {store.sync.kind} store "
        f"from a snapshot of {_namespace_name(header.namespace)} of a {header.source} store "
        f"made {_ago(header.created_at, now)}" + (f"; {skipped} expired entries skipped" if skipped else ""),
    )


@cli.command("demo")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535), help="Port to listen on.")
@_common_options
def demo(host: str, port: int) -> None:
    """Run the demo app (needs the demo extra: pip install 'authx-epoch[demo]')."""
    try:
        from authx_epoch import demo as demo_app
    except ImportError as exc:
        raise CommandError(
            f"the demo cannot be loaded ({exc}); install it with pip install 'authx-epoch[demo]'"
        ) from exc
    options: dict[str, Any] = {"host": host, "port": port}
    if _settings().store_url:
        options["store"] = _settings().store_url
    demo_app.serve(**options)


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

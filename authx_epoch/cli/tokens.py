"""The commands that act on tokens and users: bump, bump-global, revoke, revoke-session, inspect."""

from __future__ import annotations

import datetime as dt
import sys
import time
from typing import Any, Optional, Union

import click
from authx import TokenPayload

from authx_epoch.claims import ClaimNames, claims_from_mapping
from authx_epoch.cli.arguments import (
    claim_names_option,
    instant_option,
    non_empty,
    token_argument,
    token_payload,
)
from authx_epoch.cli.context import (
    EXIT_REFUSED,
    CommandError,
    common_options,
    confirm,
    create_option,
    emit,
    exit_with,
    open_command_store,
    service_for,
)
from authx_epoch.cli.output import (
    EXPLANATIONS,
    ago,
    iso,
    namespace_name,
    record_json,
    resolved,
    store_line,
    table,
)
from authx_epoch.records import unix_time
from authx_epoch.revocation import MAX_ID_LENGTH
from authx_epoch.stores import open_store


@click.command("bump")
@click.argument("user", callback=non_empty)
@click.option("--reason", help="Why; kept in the user's record (audit trail).")
@create_option
@common_options
def bump(user: str, reason: Optional[str], create: bool) -> None:
    """Log USER out everywhere: every token of USER minted before now is rejected."""
    store = open_command_store(write=True, create=create)
    record = service_for(store).sync.bump_user_epoch(user, reason=reason)
    emit(
        {"uid": user, "record": record_json(record)},
        f"bumped {user!r}: epoch {record.epoch} at {iso(record.bumped_at)}"
        + (f" (reason: {record.reason})" if record.reason else "")
        + f"\nevery token of {user!r} minted before now is rejected",
    )


@click.command("bump-global")
@click.option("--reason", help="Why; kept in the global record (audit trail).")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation on a terminal.")
@create_option
@common_options
def bump_global(reason: Optional[str], yes: bool, create: bool) -> None:
    """Log every user out: every token minted before now is rejected."""
    store = open_command_store(write=True, create=create)
    question = f"This logs out every user of every app using {resolved(store)}. Go on?"
    if not yes and sys.stdin.isatty() and not confirm(question):
        click.echo("nothing changed", err=True)
        exit_with(EXIT_REFUSED)
    record = service_for(store).sync.bump_global_epoch(reason=reason)
    emit(
        {"record": record_json(record), "namespace": store.namespace},
        f"bumped the global epoch of {namespace_name(store.namespace)}: {record.epoch} at {iso(record.bumped_at)}"
        + (f" (reason: {record.reason})" if record.reason else "")
        + "\nevery token of every user minted before now is rejected",
    )


@click.command("revoke")
@click.argument("token", required=False)
@click.option("--jti", help="Revoke this token id instead of a whole token.")
@click.option("--user", "uid", help="The user the jti belongs to (with --jti).")
@click.option(
    "--expires-at", "expires_at", callback=instant_option, metavar="TIME", help="When that token expires (with --jti)."
)
@create_option
@common_options
def revoke(
    token: Optional[str], jti: Optional[str], uid: Optional[str], expires_at: Optional[float], create: bool
) -> None:
    """Revoke one token until it expires: TOKEN ('-' reads it from stdin), or --jti J --user U --expires-at T.

    The signature of TOKEN is not verified: the CLI has no signing key.
    """
    by_id = (jti, uid, expires_at)
    if token is not None and any(value is not None for value in by_id):
        raise click.UsageError("give either TOKEN or --jti/--user/--expires-at, not both")
    target: Union[str, TokenPayload]
    if token is None:
        if jti is None or uid is None or expires_at is None:
            raise click.UsageError("give TOKEN, or all of --jti, --user and --expires-at")
        if not jti:
            raise click.UsageError("--jti must not be empty")
        if len(uid) > MAX_ID_LENGTH or len(jti) > MAX_ID_LENGTH:
            raise CommandError(f"the user id or jti is longer than {MAX_ID_LENGTH} characters; nothing was revoked")
        target = TokenPayload(sub=uid, jti=jti, exp=dt.datetime.fromtimestamp(expires_at, dt.timezone.utc))
        data: dict[str, Any] = {"uid": uid, "jti": jti, "expires_at": expires_at}
    else:
        target = token_argument(token)
        payload = token_payload(target)
        data = {"uid": payload.get("sub"), "jti": payload.get("jti"), "expires_at": unix_time(payload.get("exp"))}
    data["signature_verified"] = False
    named = f"token {data['jti']} of {data['uid']!r}"
    if _revoked_on_a_scratch_store(target) is None:
        open_command_store()
        emit({**data, "revoked": False}, f"{named} expired at {iso(data['expires_at'])}: nothing to do")
        return
    store = open_command_store(write=True, create=create)
    until = service_for(store).sync.revoke_token(target)
    emit(
        {**data, "revoked": True},
        f"revoked {named} until {iso(until)}"
        + (" (signature not verified: the CLI has no signing key)" if token is not None else ""),
    )


def _revoked_on_a_scratch_store(target: Union[str, TokenPayload]) -> Optional[float]:
    # The service reads the token and decides how long its revocation is kept. It runs first on
    # a store of its own, so that a token it refuses, or one already expired, never opens (or is
    # refused a write to) the real one: the real store is opened only for a token to revoke.
    scratch = open_store("memory://")
    try:
        return service_for(scratch).sync.revoke_token(target)
    finally:
        scratch.sync.close()


@click.command("revoke-session")
@click.argument("session_id", metavar="SID", callback=non_empty)
@click.option(
    "--expires-at",
    "expires_at",
    callback=instant_option,
    metavar="TIME",
    help="When the session's longest-lived token expires (default: the service's session lifetime from now).",
)
@create_option
@common_options
def revoke_session(session_id: str, expires_at: Optional[float], create: bool) -> None:
    """Revoke every token of session SID (access and refresh) until --expires-at.

    A SID the store knows no live session by is revoked all the same (harmless, idempotent), with a
    warning on stderr, as it is most often a typo; exit code 0.
    """
    store = open_command_store(write=True, create=create)
    service = service_for(store)
    known = service.sync.revoke_session(session_id, expires_at=expires_at)
    # What the store keeps, as the service decided it (the session lifetime when no expiry is given).
    record = service.sync.get_session_record(session_id)
    until = record.expires_at if record is not None else None
    if not known:
        click.echo(
            f"authx-epoch: warning: no live session {session_id!r} was known to this store (a typo, or a session "
            "already ended or expired); it is revoked anyway, in case a token of it is still around",
            err=True,
        )
    emit(
        {"session_id": session_id, "expires_at": until, "known": known},
        f"revoked session {session_id!r} until {iso(until)}",
    )


@click.command("inspect")
@click.argument("token")
@click.option(
    "--claim-names",
    "claims",
    callback=claim_names_option,
    metavar="U,G,S",
    help="The app's stamp claim names if not the defaults: USER_EPOCH,GLOBAL_EPOCH,SESSION_ID.",
)
@click.option(
    "--accept-unstamped-until",
    callback=instant_option,
    metavar="TIME",
    help="The app's migration window, if it has one, so unstamped tokens are judged as the app does.",
)
@common_options
def inspect(token: str, claims: Optional[ClaimNames], accept_unstamped_until: Optional[float]) -> None:
    """Show the claims of TOKEN that matter and whether the check accepts it now, and if not, why.

    TOKEN may be '-' to read it from stdin. Its signature is not verified: the CLI has no signing key.
    Exit code 0 if accepted, 1 if revoked or expired.
    """
    token = token_argument(token)
    names = claims or ClaimNames()
    parsed = claims_from_mapping(token_payload(token), names)
    if parsed is None:
        raise CommandError("malformed token: it has no string sub, so it is not a token authx-epoch stamps")
    store = open_command_store()
    window = None
    if accept_unstamped_until is not None:
        window = dt.datetime.fromtimestamp(accept_unstamped_until, dt.timezone.utc)
    service = service_for(store, names, accept_unstamped_until=window)
    decision = service.sync.check(token)
    record = service.sync.get_user_record(parsed.sub)
    global_ = service.sync.get_global_record()
    now = time.time()
    expired = parsed.exp is not None and parsed.exp <= now
    refused = not decision.accepted or expired
    stamped = parsed.stamp.value == "stamped"
    explanation = EXPLANATIONS.get(decision.reason, decision.reason.value)
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
        "store": {"user": record_json(record), "global": record_json(global_)},
    }
    stamps = f"user epoch {parsed.user_epoch}, global epoch {parsed.global_epoch}" if stamped else parsed.stamp.value
    verdict = "ACCEPTED" if decision.accepted else f"REJECTED ({decision.reason.value})"
    rows = [
        ("sub", parsed.sub),
        ("jti", parsed.jti or "-"),
        ("session", parsed.session_id or "-"),
        ("issued", ago(parsed.iat, now) if parsed.iat is not None else "-"),
        ("expires", ago(parsed.exp, now) if parsed.exp is not None else "-"),
        ("stamps", stamps),
        ("store", store_line(record, global_)),
        ("signature", "not verified (the CLI has no signing key)"),
        ("decision", f"{verdict}: {explanation}"),
    ]
    if expired:
        rows.append(("note", "the token has expired: AuthX refuses it whatever the revocation check says"))
    emit(data, table(rows))
    if refused:
        exit_with(EXIT_REFUSED)

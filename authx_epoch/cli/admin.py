"""The commands that look after the store: status, stats, export, import, and the demo app."""

from __future__ import annotations

import os
import tempfile
import time
from typing import Any

import click

from authx_epoch.cli.arguments import (
    non_empty,
)
from authx_epoch.cli.context import (
    CommandError,
    RefusedError,
    common_options,
    create_option,
    current_settings,
    emit,
    open_command_store,
    progress,
    service_for,
)
from authx_epoch.cli.output import (
    ago,
    namespace_name,
    record_json,
    record_lines,
    table,
    tally,
)
from authx_epoch.errors import InvalidArgumentError
from authx_epoch.snapshot import read_snapshot, write_snapshot


@click.command("status")
@click.argument("user", callback=non_empty)
@common_options
def status(user: str) -> None:
    """Show USER's epoch: its value, when and why it last moved."""
    store = open_command_store()
    service = service_for(store)
    record = service.sync.get_user_record(user)
    global_ = service.sync.get_global_record()
    now = time.time()
    if record is None:
        human = (
            f"no record for {user!r}: no token of {user!r} was stamped on this store, or its record expired"
            " (a stamped token without a record is rejected as lost_state)"
        )
    else:
        human = table([("user", user), *record_lines(record, now)])
    if global_ is not None:
        human += f"\n\nglobal epoch {global_.epoch}, last moved {ago(global_.bumped_at, now)}"
        if global_.reason:
            human += f" (reason: {global_.reason})"
    human += f"\nstore {store.location}, {namespace_name(store.namespace)}"
    emit(
        {
            "uid": user,
            "record": record_json(record),
            "global": record_json(global_),
            "namespace": store.namespace,
            "location": store.location,
        },
        human,
    )


@click.command("stats")
@common_options
def stats() -> None:
    """Count what the store holds: users with records, unexpired revoked jtis and sessions."""
    store = open_command_store()
    service = service_for(store)
    counts = service.sync.stats()
    global_ = service.sync.get_global_record()
    now = time.time()
    emit(
        {
            "kind": counts.kind,
            "users": counts.users,
            "revoked_tokens": counts.revoked_tokens,
            "revoked_sessions": counts.revoked_sessions,
            "global": record_json(global_),
            "namespace": store.namespace,
            "location": store.location,
        },
        table(
            [
                ("store", counts.kind),
                ("location", store.location),
                ("namespace", store.namespace or "(root)"),
                ("users with records", str(counts.users)),
                ("revoked tokens", str(counts.revoked_tokens)),
                ("revoked sessions", str(counts.revoked_sessions)),
                ("global epoch", str(global_.epoch) if global_ else "none (store not set up, or state lost)"),
                ("global last moved", ago(global_.bumped_at, now) if global_ else "-"),
            ]
        ),
    )


@click.command("export")
@click.argument("file", type=click.Path(dir_okay=False, writable=True))
@click.option("--force", is_flag=True, help="Overwrite FILE if it exists.")
@common_options
def export(file: str, force: bool) -> None:
    """Write the whole revocation state to FILE as a msgpack snapshot (a backup, or to move stores)."""
    if os.path.exists(file) and not force:
        raise CommandError(f"{file!r} exists; pass --force to overwrite it")
    store = open_command_store()
    now = time.time()
    entries = list(store.sync.export_entries(now))
    directory = os.path.dirname(os.path.abspath(file))
    # Write next to the target and rename: a crash never leaves half a snapshot under FILE's name.
    handle, temporary = tempfile.mkstemp(prefix=".authx-epoch-", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(handle, "wb") as stream, progress(len(entries), "exporting") as advance:
            write_snapshot(
                stream, entries, source=store.sync.kind, now=now, progress=advance, namespace=store.namespace
            )
        os.replace(temporary, file)
    except BaseException:
        os.unlink(temporary)
        raise
    counts = tally(entries)
    emit(
        {
            "file": file,
            "entries": len(entries),
            "counts": counts,
            "source": store.sync.kind,
            "namespace": store.namespace,
        },
        f"exported {len(entries)} entries from {namespace_name(store.namespace)} of the {store.sync.kind} store "
        f"to {file}: "
        f"{counts['user']} users, {counts['token']} revoked tokens, "
        f"{counts['session']} sessions ({counts['revoked_session']} revoked), "
        f"{'the' if counts['global'] else 'no'} global record",
    )


@click.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, readable=True))
@create_option
@common_options
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
    store = open_command_store(write=True, create=create)
    imported = 0
    chunk = 1000
    with progress(len(live), "importing") as advance:
        for start in range(0, len(live), chunk):
            part = live[start : start + chunk]
            imported += store.sync.import_entries(part, now)
            advance(len(part))
    skipped = len(entries) - len(live)
    emit(
        {
            "file": file,
            "imported": imported,
            "skipped_expired": skipped,
            "source": header.source,
            "source_namespace": header.namespace,
            "namespace": store.namespace,
            "created_at": header.created_at,
            "counts": tally(live),
        },
        f"imported {imported} entries into {namespace_name(store.namespace)} of the {store.sync.kind} store "
        f"from a snapshot of {namespace_name(header.namespace)} of a {header.source} store "
        f"made {ago(header.created_at, now)}" + (f"; {skipped} expired entries skipped" if skipped else ""),
    )


@click.command("demo")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535), help="Port to listen on.")
@common_options
def demo(host: str, port: int) -> None:
    """Run the demo app (needs the demo extra: pip install 'authx-epoch[demo]')."""
    try:
        from authx_epoch import demo as demo_app
    except ImportError as exc:
        raise CommandError(
            f"the demo cannot be loaded ({exc}); install it with pip install 'authx-epoch[demo]'"
        ) from exc
    options: dict[str, Any] = {"host": host, "port": port}
    if current_settings().store_url:
        options["store"] = current_settings().store_url
    demo_app.serve(**options)

"""How the commands say things: times, records, tables, the store they work on, the explanation of a decision."""

from __future__ import annotations

import datetime as dt
from typing import Any, Optional

from authx_epoch.decision import Reason
from authx_epoch.records import EpochRecord, SnapshotEntry
from authx_epoch.stores import Store

EXPLANATIONS = {
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


def resolved(store: Store) -> str:
    """Where the command works: the store's location (no password) and the namespace."""
    return f"{store.location}, {namespace_name(store.namespace)}"


def namespace_name(namespace: str) -> str:
    """A namespace as people read it: its quoted name, or the root namespace."""
    return repr(namespace) if namespace else "the root namespace"


def where(store: Store) -> str:
    """``this store`` and, away from the root, which namespace of it."""
    return "this store" if not store.namespace else f"namespace {store.namespace!r} of this store"


# -- formatting ------------------------------------------------------------------------------


def iso(ts: Optional[float]) -> str:
    """A Unix time as ISO 8601 in UTC, or ``never``."""
    if ts is None:
        return "never"
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).isoformat(timespec="seconds")


def ago(ts: Optional[float], now: float) -> str:
    """A Unix time as ISO 8601 with how long ago (or in how long) it is from ``now``."""
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
    return f"{iso(ts)} ({text} ago)" if delta >= 0 else f"{iso(ts)} (in {text})"


def record_json(record: Optional[EpochRecord]) -> Optional[dict[str, Any]]:
    """An epoch record as the JSON answers carry it."""
    if record is None:
        return None
    return {
        "epoch": record.epoch,
        "created_at": record.created_at,
        "bumped_at": record.bumped_at,
        "reason": record.reason,
        "expires_at": record.expires_at,
    }


def record_lines(record: EpochRecord, now: float) -> list[tuple[str, str]]:
    """An epoch record as rows of a table."""
    return [
        ("epoch", str(record.epoch)),
        ("last moved", ago(record.bumped_at, now)),
        ("reason", record.reason if record.reason is not None else "-"),
        ("created", ago(record.created_at, now)),
        ("kept until", "forever" if record.expires_at is None else ago(record.expires_at, now)),
    ]


def table(rows: list[tuple[str, str]]) -> str:
    """Rows as aligned ``label: value`` lines."""
    width = max(len(label) for label, _ in rows) + 1
    return "\n".join(f"{label + ':':<{width}} {value}" for label, value in rows)


def store_line(record: Optional[EpochRecord], global_: Optional[EpochRecord]) -> str:
    """What the store holds for a token's user and the global epoch, in one line."""
    line = f"user epoch {record.epoch if record else 'none'}"
    if record is not None and record.bumped_at is not None:
        line += f" (moved {iso(record.bumped_at)}, reason: {record.reason or '-'})"
    return line + f", global epoch {global_.epoch if global_ else 'none'}"


def tally(entries: list[SnapshotEntry]) -> dict[str, int]:
    """Count snapshot entries by kind (and the revoked sessions among them)."""
    counts = {"global": 0, "user": 0, "token": 0, "session": 0, "revoked_session": 0}
    for entry in entries:
        counts[entry.kind] = counts.get(entry.kind, 0) + 1
        # A session entry without its record (a version-1 snapshot) is a revoked session id.
        if entry.kind == "session" and (entry.session is None or entry.session.revoked):
            counts["revoked_session"] += 1
    return counts

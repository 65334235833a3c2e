"""The store contract: what every backend must do, in a sync and an async flavour.

A store only fetches state and applies atomic writes; it never decides. The decision is made
by ``authx_epoch.decision`` from what ``fetch`` returns, identically for every backend.

Every backend object exposes ``.sync`` (a ``SyncStore``) and ``.aio`` (an ``AsyncStore``) over
the same data. Backends whose I/O is local (memory, SQLite) implement ``SyncStore`` and get
their async side from ``AsyncFromSync``; network backends implement both natively.

Namespaces: every store object works in one namespace of its data (``""``, the root, is the
layout and data of stores written before namespaces existed). ``with_namespace(name)`` gives a
view of the same data in another namespace: records, revoked ids and sessions of one namespace
are never seen, counted, exported nor wiped through another. A view shares its parent's
connections, clients and files and owns none of them: its ``close()`` (and its sides' ``close()``)
does nothing; close the store object you built (or that ``open_store`` returned) once its views
are no longer used.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Iterable, Iterator
from typing import Optional, Protocol, TypeVar, runtime_checkable

from authx_epoch.errors import ConfigurationError
from authx_epoch.records import (
    CheckState,
    EpochRecord,
    RotationOutcome,
    SessionRecord,
    SnapshotEntry,
    Stamps,
    StoreStats,
)

_R = TypeVar("_R")

#: The root namespace: the data of a store as it was before namespaces existed.
ROOT_NAMESPACE = ""

_NAMESPACE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def namespaced_prefix(prefix: str, namespace: str) -> str:
    """The key prefix of ``namespace`` under ``prefix``: ``prefix`` itself for the root, else ``prefix~namespace``.

    ``~`` is allowed in neither prefixes nor namespace names, so ``prefix:*`` (the root's keys)
    never matches the keys of a namespace, nor one namespace's keys another's.
    """
    return f"{prefix}~{namespace}" if namespace else prefix


def check_namespace(namespace: object) -> str:
    """Return ``namespace`` if it is a valid namespace name.

    Raises:
        ConfigurationError: It is not ``""`` (the root) nor 1 to 64 ASCII letters, digits,
            ``_``, ``.`` or ``-`` starting with a letter or a digit.
    """
    if namespace == ROOT_NAMESPACE or (isinstance(namespace, str) and _NAMESPACE.fullmatch(namespace)):
        return str(namespace)
    raise ConfigurationError(
        "a namespace is '' (the root) or 1 to 64 ASCII letters, digits, '_', '.' or '-' starting with a letter "
        f"or a digit, got {namespace!r:.80}"
    )


@runtime_checkable
class SyncStore(Protocol):
    """The blocking side of a store. Every method raises ``StoreUnavailableError`` on I/O trouble."""

    kind: str

    def setup(self, now: float) -> EpochRecord:
        """Create the global record if it is missing and return it (its ``created_at`` is the set-up time)."""
        ...

    def fetch(self, uid: str, jti: Optional[str], session_id: Optional[str], now: float) -> CheckState:
        """Return everything one check needs, in one store call. Never writes."""
        ...

    def issue(self, uid: str, now: float, expires_at: float, session_id: Optional[str] = None) -> Stamps:
        """Return the epochs to stamp into a token of ``uid`` that lives until ``expires_at``.

        Creates the user and global records when they are missing (starting at the clock value)
        and keeps the user record alive at least until ``expires_at``. With ``session_id``, does
        the same for the session's record and returns its generation in the stamps (a revoked
        session stays revoked; a new record belongs to ``uid``). Writes nothing when every record
        already lives long enough.

        Raises:
            SessionOwnerError: The session's live record belongs to another user; nothing was
                written (no user, global or session record).
        """
        ...

    def rotate_session(
        self, session_id: str, uid: str, presented_generation: int, now: float, grace: float, expires_at: float
    ) -> RotationOutcome:
        """Atomically rotate a session of ``uid`` on the use of its refresh token (see ``records.rotate``).

        ``ROTATED``: the presented generation was current; it moved forward and the record lives
        at least until ``expires_at``. ``GRACE``: the previous generation within ``grace`` seconds
        of the rotation, the first time since it; nothing moves but the record remembers that the
        grace is used. ``REUSED``: anything older, or the previous generation again; the session
        is revoked in the same atomic step. ``REVOKED``: already revoked. ``MISSING``: no live
        record, or one of another user (nothing is written then).
        """
        ...

    def get_session(self, session_id: str, now: float) -> Optional[SessionRecord]:
        """Return the session's live record, or ``None``."""
        ...

    def bump_user(self, uid: str, now: float, reason: Optional[str], expires_at: float) -> EpochRecord:
        """Atomically move the user's epoch to ``max(current + 1, clock value)`` and return the record.

        The record is kept at least until ``expires_at``.
        """
        ...

    def bump_global(self, now: float, reason: Optional[str]) -> EpochRecord:
        """Atomically move the global epoch to ``max(current + 1, clock value)`` and return the record."""
        ...

    def revoke_token(self, uid: str, jti: str, expires_at: float, now: float) -> None:
        """Put ``jti`` (a token of ``uid``) in the revoked set until ``expires_at``, never shortening an entry.

        The owner is given so that a sharded store can keep the entry next to the user's record.
        """
        ...

    def revoke_session(self, session_id: str, expires_at: float, now: float, uid: Optional[str] = None) -> bool:
        """Mark the session revoked until at least ``expires_at`` (never shortening its record).

        A session the store has no record of gets a revoked record (owned by ``uid``, or by
        nobody), so tokens that carry its id are rejected whether or not they carry a generation.
        Returns whether a live record of the session existed before the call.

        Raises:
            SessionOwnerError: ``uid`` is given and the session's live record belongs to another
                user; nothing was written.
        """
        ...

    def get_user(self, uid: str, now: float) -> Optional[EpochRecord]:
        """Return the user's live record, or ``None``."""
        ...

    def get_global(self, now: float) -> Optional[EpochRecord]:
        """Return the global record, or ``None`` if it is missing."""
        ...

    def stats(self, now: float) -> StoreStats:
        """Count what the store holds (live entries only)."""
        ...

    def export_entries(self, now: float) -> Iterator[SnapshotEntry]:
        """Yield every live record and revoked id (for backups and moving between stores)."""
        ...

    def import_entries(self, entries: Iterable[SnapshotEntry], now: float) -> int:
        """Merge entries in, never moving an epoch backwards nor shortening a revocation; return the count.

        Raises:
            InvalidArgumentError: A revoked token entry has no owner; nothing was imported.
        """
        ...

    def wipe(self) -> None:
        """Forget everything of this namespace (tests and drills; the result is rejection, never acceptance)."""
        ...

    def close(self) -> None:
        """Release connections and files (nothing for a namespace view: see the module docs)."""
        ...


@runtime_checkable
class AsyncStore(Protocol):
    """The awaitable side of a store: the same operations as ``SyncStore``."""

    kind: str

    async def setup(self, now: float) -> EpochRecord:
        """See ``SyncStore.setup``."""
        ...

    async def fetch(self, uid: str, jti: Optional[str], session_id: Optional[str], now: float) -> CheckState:
        """See ``SyncStore.fetch``."""
        ...

    async def issue(self, uid: str, now: float, expires_at: float, session_id: Optional[str] = None) -> Stamps:
        """See ``SyncStore.issue``."""
        ...

    async def rotate_session(
        self, session_id: str, uid: str, presented_generation: int, now: float, grace: float, expires_at: float
    ) -> RotationOutcome:
        """See ``SyncStore.rotate_session``."""
        ...

    async def get_session(self, session_id: str, now: float) -> Optional[SessionRecord]:
        """See ``SyncStore.get_session``."""
        ...

    async def bump_user(self, uid: str, now: float, reason: Optional[str], expires_at: float) -> EpochRecord:
        """See ``SyncStore.bump_user``."""
        ...

    async def bump_global(self, now: float, reason: Optional[str]) -> EpochRecord:
        """See ``SyncStore.bump_global``."""
        ...

    async def revoke_token(self, uid: str, jti: str, expires_at: float, now: float) -> None:
        """See ``SyncStore.revoke_token``."""
        ...

    async def revoke_session(self, session_id: str, expires_at: float, now: float, uid: Optional[str] = None) -> bool:
        """See ``SyncStore.revoke_session``."""
        ...

    async def get_user(self, uid: str, now: float) -> Optional[EpochRecord]:
        """See ``SyncStore.get_user``."""
        ...

    async def get_global(self, now: float) -> Optional[EpochRecord]:
        """See ``SyncStore.get_global``."""
        ...

    async def stats(self, now: float) -> StoreStats:
        """See ``SyncStore.stats``."""
        ...

    async def export_entries(self, now: float) -> list[SnapshotEntry]:
        """See ``SyncStore.export_entries`` (returns a list)."""
        ...

    async def import_entries(self, entries: Iterable[SnapshotEntry], now: float) -> int:
        """See ``SyncStore.import_entries``."""
        ...

    async def wipe(self) -> None:
        """See ``SyncStore.wipe``."""
        ...

    async def close(self) -> None:
        """See ``SyncStore.close``."""
        ...


@runtime_checkable
class Store(Protocol):
    """A backend: one object holding both sides over the same data, in one namespace of it."""

    @property
    def sync(self) -> SyncStore:
        """The blocking side."""
        ...

    @property
    def aio(self) -> AsyncStore:
        """The awaitable side."""
        ...

    @property
    def namespace(self) -> str:
        """The namespace this object works in (``""``: the root)."""
        ...

    @property
    def location(self) -> str:
        """Where the data is, without any secret: equal for every store object over the same data.

        ``memory://<id>``, ``sqlite:////absolute/path.db``, ``redis://host:port/db?prefix=P``,
        ``unix:///path?db=N&prefix=P`` or ``redis+cluster://h1:p1,h2:p2?prefix=P``. The namespace
        is not part of it (see ``namespace``).
        """
        ...

    def with_namespace(self, namespace: str) -> Store:
        """A view of the same data in ``namespace``, sharing this object's connections (see the module docs).

        Raises:
            ConfigurationError: ``namespace`` is not a valid name (see ``check_namespace``).
        """
        ...


class AsyncFromSync:
    """The async side of a backend whose I/O is local.

    Reads run inline: they cost what a dictionary or a local SQLite read costs, less than a
    thread hop. Writes may wait on a lock held by another process, so with ``offload_writes``
    they run in a worker thread and never block the event loop.
    """

    def __init__(self, sync: SyncStore, *, offload_writes: bool) -> None:
        """Wrap ``sync``; ``offload_writes`` moves writes to a worker thread."""
        self._sync = sync
        #: Whether writes run in a worker thread.
        self.offload_writes = offload_writes
        self.kind = sync.kind

    async def _write(self, func: Callable[..., _R], *args: object) -> _R:
        if self.offload_writes:
            return await asyncio.to_thread(func, *args)
        return func(*args)

    async def setup(self, now: float) -> EpochRecord:
        """See ``SyncStore.setup``."""
        return await self._write(self._sync.setup, now)

    async def fetch(self, uid: str, jti: Optional[str], session_id: Optional[str], now: float) -> CheckState:
        """See ``SyncStore.fetch``."""
        return self._sync.fetch(uid, jti, session_id, now)

    async def issue(self, uid: str, now: float, expires_at: float, session_id: Optional[str] = None) -> Stamps:
        """See ``SyncStore.issue``."""
        return await self._write(self._sync.issue, uid, now, expires_at, session_id)

    async def rotate_session(
        self, session_id: str, uid: str, presented_generation: int, now: float, grace: float, expires_at: float
    ) -> RotationOutcome:
        """See ``SyncStore.rotate_session``."""
        return await self._write(
            self._sync.rotate_session, session_id, uid, presented_generation, now, grace, expires_at
        )

    async def get_session(self, session_id: str, now: float) -> Optional[SessionRecord]:
        """See ``SyncStore.get_session``."""
        return self._sync.get_session(session_id, now)

    async def bump_user(self, uid: str, now: float, reason: Optional[str], expires_at: float) -> EpochRecord:
        """See ``SyncStore.bump_user``."""
        return await self._write(self._sync.bump_user, uid, now, reason, expires_at)

    async def bump_global(self, now: float, reason: Optional[str]) -> EpochRecord:
        """See ``SyncStore.bump_global``."""
        return await self._write(self._sync.bump_global, now, reason)

    async def revoke_token(self, uid: str, jti: str, expires_at: float, now: float) -> None:
        """See ``SyncStore.revoke_token``."""
        await self._write(self._sync.revoke_token, uid, jti, expires_at, now)

    async def revoke_session(self, session_id: str, expires_at: float, now: float, uid: Optional[str] = None) -> bool:
        """See ``SyncStore.revoke_session``."""
        return await self._write(self._sync.revoke_session, session_id, expires_at, now, uid)

    async def get_user(self, uid: str, now: float) -> Optional[EpochRecord]:
        """See ``SyncStore.get_user``."""
        return self._sync.get_user(uid, now)

    async def get_global(self, now: float) -> Optional[EpochRecord]:
        """See ``SyncStore.get_global``."""
        return self._sync.get_global(now)

    async def stats(self, now: float) -> StoreStats:
        """See ``SyncStore.stats``."""
        return self._sync.stats(now)

    async def export_entries(self, now: float) -> list[SnapshotEntry]:
        """See ``SyncStore.export_entries``."""
        return await self._write(lambda: list(self._sync.export_entries(now)))

    async def import_entries(self, entries: Iterable[SnapshotEntry], now: float) -> int:
        """See ``SyncStore.import_entries``."""
        return await self._write(self._sync.import_entries, list(entries), now)

    async def wipe(self) -> None:
        """See ``SyncStore.wipe``."""
        await self._write(self._sync.wipe)

    async def close(self) -> None:
        """See ``SyncStore.close``."""
        self._sync.close()

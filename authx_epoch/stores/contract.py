"""The store contract, written once: each operation declared here, each backend implementing it once.

A backend (``Store``) implements every operation as one method. The method returns either the
answer itself (memory and SQLite always do: their I/O is local, and the local cache does on a
hit) or a *flow*: a generator that yields I/O requests (a Redis command, a script call, a
message to publish), receives each answer, and returns the result. Two runners drive flows:
``run`` for the blocking side, ``arun`` for the asyncio side, each handing the requests to the
backend's ``execute`` or ``execute_async``. This is httpx's ``auth_flow`` design: the logic of a
multi-step operation is written once, the I/O twice (and only the I/O, in one method per side).

A store object has two sides over the same data, built here for every backend:

* ``store.sync`` (``SyncStore``): every operation, blocking. It is what AuthX's synchronous
  minting, ``revocation.sync``, the command line and snapshots use; the administrative
  operations (``stats``, ``export_entries``, ``import_entries``, ``wipe``) live only here.
* ``store.aio`` (``AsyncStore``): the request path, awaitable. For local backends, reads run
  inline (a dictionary or a local SQLite read costs less than a thread hop) and writes run in a
  worker thread when the backend says they may wait on another process's lock
  (``offload_writes``).

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
import functools
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Generator, Iterable, Sequence
from types import GeneratorType
from typing import TYPE_CHECKING, Any, Concatenate, Generic, Optional, ParamSpec, TypeAlias, TypeVar, Union, overload

from authx_epoch.records import (
    CheckState,
    EpochRecord,
    RotationOutcome,
    SessionRecord,
    SnapshotEntry,
    Stamps,
    StoreStats,
)
from authx_epoch.stores.versions import UserView, Versions

_R = TypeVar("_R")
_P = ParamSpec("_P")

#: A multi-step operation: yields I/O requests, receives their answers, returns the result.
Flow: TypeAlias = Generator[Any, Any, _R]
#: What a backend's operation returns: the answer, or the flow that computes it.
Step: TypeAlias = Union[_R, Flow[_R]]


def run(flow: Flow[_R], execute: Callable[[Any], Any]) -> _R:
    """Drive ``flow`` to its result, doing each request with ``execute`` (blocking)."""
    try:
        request = next(flow)
        while True:
            try:
                answer = execute(request)
            except Exception as exc:  # the flow's own handlers (e.g. "store unavailable") see it
                request = flow.throw(exc)
            else:
                request = flow.send(answer)
    except StopIteration as stop:
        result: _R = stop.value
        return result


async def arun(flow: Flow[_R], execute: Callable[[Any], Awaitable[Any]]) -> _R:
    """Drive ``flow`` to its result, awaiting each request's ``execute``."""
    try:
        request = next(flow)
        while True:
            try:
                answer = await execute(request)
            except Exception as exc:
                request = flow.throw(exc)
            else:
                request = flow.send(answer)
    except StopIteration as stop:
        result: _R = stop.value
        return result


def flow_of(step: Step[_R]) -> Flow[_R]:
    """A flow of ``step`` whatever it is, for a backend composing another's operations (``yield from``)."""
    if type(step) is GeneratorType:
        return (yield from step)  # type: ignore[no-any-return]
    return step  # type: ignore[return-value]


#: How a side runs an operation.
READ, WRITE, ADMIN = "read", "write", "admin"


class Operation(Generic[_P, _R]):
    """One store operation, declared once by the contract method it names.

    As a class attribute of a side, it reads as the operation with that side's calling
    convention: ``Callable[P, R]`` on ``SyncStore``, ``Callable[P, Awaitable[R]]`` on
    ``AsyncStore``. Sides bind every operation to their backend when they are built.
    """

    def __init__(self, declared: Callable[Concatenate[Any, _P], Step[_R]], mode: str) -> None:
        self.name = declared.__name__
        self.mode = mode
        self.__doc__ = declared.__doc__

    if TYPE_CHECKING:

        @overload
        def __get__(self, side: None, owner: Any) -> Operation[_P, _R]: ...

        @overload
        def __get__(self, side: SyncStore, owner: Any) -> Callable[_P, _R]: ...

        @overload
        def __get__(self, side: AsyncStore, owner: Any) -> Callable[_P, Awaitable[_R]]: ...

        def __get__(self, side: Any, owner: Any) -> Any: ...


class Store(ABC):
    """A backend: the contract every store implements, one method per operation.

    Operations may raise ``StoreUnavailableError`` on I/O trouble. Implementations return the
    answer or a flow (see the module docs); callers use the sides, ``sync`` and ``aio``.
    """

    #: The backend's name in stats and logs: ``memory``, ``sqlite``, ``redis``, ``redis+cluster``.
    kind: str
    #: Whether writes may wait on another process (a SQLite file lock): the async side then runs
    #: them in a worker thread. Meaningful for backends whose operations never yield requests.
    offload_writes: bool = False
    #: Whether operations may return flows; backends that only answer directly leave it false.
    yields_requests: bool = False

    # -- the request path -------------------------------------------------------------------

    @abstractmethod
    def setup(self, now: float) -> Step[EpochRecord]:
        """Create the global record if it is missing and return it (its ``created_at`` is the set-up time)."""

    @abstractmethod
    def fetch(self, uid: str, jti: Optional[str], session_id: Optional[str], now: float) -> Step[CheckState]:
        """Return everything one check needs, in one store call. Never writes."""

    @abstractmethod
    def issue(self, uid: str, now: float, expires_at: float, session_id: Optional[str] = None) -> Step[Stamps]:
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

    @abstractmethod
    def rotate_session(
        self, session_id: str, uid: str, presented_generation: int, now: float, grace: float, expires_at: float
    ) -> Step[RotationOutcome]:
        """Atomically rotate a session of ``uid`` on the use of its refresh token (see ``records.rotate``).

        ``ROTATED``: the presented generation was current; it moved forward and the record lives
        at least until ``expires_at``. ``GRACE``: the previous generation within ``grace`` seconds
        of the rotation, the first time since it; nothing moves but the record remembers that the
        grace is used. ``REUSED``: anything older, or the previous generation again; the session
        is revoked in the same atomic step. ``REVOKED``: already revoked. ``MISSING``: no live
        record, or one of another user (nothing is written then).
        """

    @abstractmethod
    def get_session(self, session_id: str, now: float) -> Step[Optional[SessionRecord]]:
        """Return the session's live record, or ``None``."""

    @abstractmethod
    def bump_user(self, uid: str, now: float, reason: Optional[str], expires_at: float) -> Step[EpochRecord]:
        """Atomically move the user's epoch to ``max(current + 1, clock value)`` and return the record.

        The record is kept at least until ``expires_at``.
        """

    @abstractmethod
    def bump_global(self, now: float, reason: Optional[str]) -> Step[EpochRecord]:
        """Atomically move the global epoch to ``max(current + 1, clock value)`` and return the record."""

    @abstractmethod
    def revoke_token(self, uid: str, jti: str, expires_at: float, now: float) -> Step[None]:
        """Put ``jti`` (a token of ``uid``) in the revoked set until ``expires_at``, never shortening an entry.

        The owner is given so that a sharded store can keep the entry next to the user's record.
        """

    @abstractmethod
    def revoke_session(self, session_id: str, expires_at: float, now: float, uid: Optional[str] = None) -> Step[bool]:
        """Mark the session revoked until at least ``expires_at`` (never shortening its record).

        A session the store has no record of gets a revoked record (owned by ``uid``, or by
        nobody), so tokens that carry its id are rejected whether or not they carry a generation.
        Returns whether a live record of the session existed before the call.

        Raises:
            SessionOwnerError: ``uid`` is given and the session's live record belongs to another
                user; nothing was written.
        """

    @abstractmethod
    def get_user(self, uid: str, now: float) -> Step[Optional[EpochRecord]]:
        """Return the user's live record, or ``None``."""

    @abstractmethod
    def get_global(self, now: float) -> Step[Optional[EpochRecord]]:
        """Return the global record, or ``None`` if it is missing."""

    # -- versioned reads (optional: for the local cache, see ``stores.versions``) ----------------

    #: Whether the store versions its users and implements ``fetch_view`` and ``read_versions``.
    versioned: bool = False

    def fetch_view(
        self, uid: str, jti: Optional[str], session_id: Optional[str], now: float
    ) -> Step[tuple[CheckState, UserView]]:
        """``fetch``, and what the store holds of the user (its version, its revoked jtis), in one read."""
        raise NotImplementedError(f"{type(self).__name__} is not versioned")

    def read_versions(self, uids: Sequence[str], session_ids: Sequence[str], now: float) -> Step[Versions]:
        """The global record, the versions of ``uids`` and the live records of ``session_ids``, in one read."""
        raise NotImplementedError(f"{type(self).__name__} is not versioned")

    # -- administration (the blocking side only) -----------------------------------------------

    @abstractmethod
    def stats(self, now: float) -> Step[StoreStats]:
        """Count what the store holds (live entries only)."""

    @abstractmethod
    def export_entries(self, now: float) -> Step[list[SnapshotEntry]]:
        """Return every live record and revoked id (for backups and moving between stores)."""

    @abstractmethod
    def import_entries(self, entries: Iterable[SnapshotEntry], now: float) -> Step[int]:
        """Merge entries in, never moving an epoch backwards nor shortening a revocation; return the count.

        Raises:
            InvalidArgumentError: A revoked token entry has no owner; nothing was imported.
        """

    @abstractmethod
    def wipe(self) -> Step[None]:
        """Forget everything of this namespace (tests and drills; the result is rejection, never acceptance)."""

    # -- the object ---------------------------------------------------------------------------

    @property
    @abstractmethod
    def namespace(self) -> str:
        """The namespace this object works in (``""``: the root)."""

    @property
    @abstractmethod
    def location(self) -> str:
        """Where the data is, without any secret: equal for every store object over the same data.

        ``memory://<id>``, ``sqlite:////absolute/path.db``, ``redis://host:port/db?prefix=P``,
        ``unix:///path?db=N&prefix=P`` or ``redis+cluster://h1:p1,h2:p2?prefix=P``. The namespace
        is not part of it (see ``namespace``).
        """

    @abstractmethod
    def with_namespace(self, namespace: str) -> Store:
        """A view of the same data in ``namespace``, sharing this object's connections (see the module docs).

        Raises:
            ConfigurationError: ``namespace`` is not a valid name (see ``check_namespace``).
        """

    @abstractmethod
    def close(self) -> None:
        """Release connections and files (nothing for a namespace view: see the module docs)."""

    async def aclose(self) -> None:
        """Release what the asyncio side holds in the running event loop (by default, ``close()``)."""
        self.close()

    def execute(self, request: Any) -> Any:
        """Do one request of a flow, blocking (backends whose operations yield requests)."""
        raise TypeError(f"{type(self).__name__} yields no requests, got {request!r:.80}")

    async def execute_async(self, request: Any) -> Any:
        """Do one request of a flow in the running event loop (backends whose operations yield requests)."""
        raise TypeError(f"{type(self).__name__} yields no requests, got {request!r:.80}")

    @property
    def reads_inline(self) -> bool:
        """Whether ``fetch`` answers without waiting on a network (memory, SQLite).

        The check then runs as a plain function call, even in the async request path.
        """
        return not self.yields_requests

    @property
    def sync(self) -> SyncStore:
        """The blocking side: every operation."""
        side = self.__dict__.get("_sync_side")
        if side is None or side.store is not self:  # a copy made by with_namespace builds its own
            side = self.__dict__["_sync_side"] = SyncStore(self)
        return side

    @property
    def aio(self) -> AsyncStore:
        """The awaitable side: the request path."""
        side = self.__dict__.get("_async_side")
        if side is None or side.store is not self:
            side = self.__dict__["_async_side"] = AsyncStore(self)
        return side


def _sync_call(store: Store, name: str) -> Callable[..., Any]:
    implementation = getattr(store, name)
    if not store.yields_requests:
        return implementation  # type: ignore[no-any-return]
    execute = store.execute

    @functools.wraps(implementation)
    def call(*args: Any, **kwargs: Any) -> Any:
        step = implementation(*args, **kwargs)
        if type(step) is GeneratorType:
            return run(step, execute)
        return step

    return call


def _async_call(store: Store, name: str, mode: str) -> Callable[..., Awaitable[Any]]:
    implementation = getattr(store, name)
    if store.yields_requests:
        execute = store.execute_async

        async def call(*args: Any, **kwargs: Any) -> Any:
            step = implementation(*args, **kwargs)
            if type(step) is GeneratorType:
                return await arun(step, execute)
            return step

    elif mode == WRITE and store.offload_writes:

        async def call(*args: Any, **kwargs: Any) -> Any:
            return await asyncio.to_thread(implementation, *args, **kwargs)

    else:

        async def call(*args: Any, **kwargs: Any) -> Any:
            return implementation(*args, **kwargs)

    call.__name__ = call.__qualname__ = name
    call.__doc__ = implementation.__doc__
    return call


class _Side:
    """What both sides share: their store, and the operations of the request path."""

    setup = Operation(Store.setup, WRITE)
    fetch = Operation(Store.fetch, READ)
    issue = Operation(Store.issue, WRITE)
    rotate_session = Operation(Store.rotate_session, WRITE)
    get_session = Operation(Store.get_session, READ)
    bump_user = Operation(Store.bump_user, WRITE)
    bump_global = Operation(Store.bump_global, WRITE)
    revoke_token = Operation(Store.revoke_token, WRITE)
    revoke_session = Operation(Store.revoke_session, WRITE)
    get_user = Operation(Store.get_user, READ)
    get_global = Operation(Store.get_global, READ)

    def __init__(self, store: Store) -> None:
        """Bind every operation of this side to ``store``."""
        #: The backend this side runs.
        self.store = store
        self.kind = store.kind

    @classmethod
    def operations(cls) -> dict[str, Operation[Any, Any]]:
        """Every operation of this side, by name."""
        found: dict[str, Operation[Any, Any]] = {}
        for klass in reversed(cls.__mro__):
            found.update({name: value for name, value in vars(klass).items() if isinstance(value, Operation)})
        return found


class SyncStore(_Side):
    """The blocking side of a store: every operation, administration included."""

    stats = Operation(Store.stats, ADMIN)
    export_entries = Operation(Store.export_entries, ADMIN)
    import_entries = Operation(Store.import_entries, ADMIN)
    wipe = Operation(Store.wipe, ADMIN)

    def __init__(self, store: Store) -> None:
        """Bind every operation to ``store``."""
        super().__init__(store)
        for name in self.operations():
            setattr(self, name, _sync_call(store, name))

    def close(self) -> None:
        """See ``Store.close``."""
        self.store.close()


class AsyncStore(_Side):
    """The awaitable side of a store: what a request needs, nothing more."""

    def __init__(self, store: Store) -> None:
        """Bind every operation to ``store``."""
        super().__init__(store)
        for name, operation in self.operations().items():
            setattr(self, name, _async_call(store, name, operation.mode))

    async def close(self) -> None:
        """See ``Store.aclose``."""
        await self.store.aclose()

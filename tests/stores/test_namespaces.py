"""Namespaces, on every backend: several AuthX instances share one store without sharing a record.

Each test takes the store of one backend (the root namespace) and views of it made by
``with_namespace``: the same data, connections and files, another namespace. Whatever one
namespace writes, counts, exports or wipes, another never sees.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator

import pytest

from authx_epoch import ConfigurationError, MemoryStore, SessionOwnerError, open_store
from authx_epoch.records import RotationStatus, SnapshotEntry
from authx_epoch.stores import AsyncStore, Store, SyncStore, check_namespace

T0 = 1_700_000_000.0
HOUR = 3600.0

View = Callable[[Store, str], Store]


@pytest.fixture
def view() -> Iterator[View]:
    """``view(store, name)``: ``store.with_namespace(name)``, wiped and closed after the test.

    The backends' fixtures wipe their root namespace only; a shared Redis must not keep the rest.
    """
    made: list[Store] = []

    def make(store: Store, name: str) -> Store:
        made.append(store.with_namespace(name))
        return made[-1]

    yield make
    for each in reversed(made):
        each.sync.wipe()
        getattr(each, "close", each.sync.close)()


def fill(store: Store, now: float = T0) -> None:
    """Something of every kind: global and user records, a bump, revoked jti and session, a rotated session."""
    sync = store.sync
    sync.setup(now)
    sync.issue("alice", now, now + 900)
    sync.bump_user("bob", now + 1, "password_change", now + HOUR)
    sync.bump_global(now + 2, "rotation")
    sync.revoke_token("alice", "j1", now + 900, now)
    sync.revoke_session("s-revoked", now + 600, now)
    generation = sync.issue("alice", now, now + 900, "s-live").session_generation
    assert generation is not None
    sync.rotate_session("s-live", "alice", generation, now + 3, 5.0, now + 900)


def state(store: Store, now: float) -> dict[str, object]:
    """Everything a namespace shows for the ids ``fill`` uses."""
    sync = store.sync
    return {
        "alice": sync.fetch("alice", "j1", "s-live", now),
        "bob": sync.fetch("bob", None, "s-revoked", now),
        "user": sync.get_user("bob", now),
        "global": sync.get_global(now),
        "session": sync.get_session("s-live", now),
        "stats": sync.stats(now),
        "export": sorted((e.kind, e.key, e.uid) for e in sync.export_entries(now)),
    }


def empty(store: Store, now: float) -> None:
    sync = store.sync
    fetched = sync.fetch("alice", "j1", "s-live", now)
    assert (fetched.user, fetched.global_, fetched.session) == (None, None, None)
    assert not fetched.jti_revoked
    assert not sync.fetch("bob", None, "s-revoked", now).session_revoked
    assert sync.get_user("bob", now) is None
    assert sync.get_global(now) is None
    assert sync.get_session("s-live", now) is None
    stats = sync.stats(now)
    assert (stats.users, stats.revoked_tokens, stats.revoked_sessions, stats.sessions or 0) == (0, 0, 0, 0)
    assert list(sync.export_entries(now)) == []


def test_a_store_and_its_views_name_their_namespace_and_share_a_location(store: Store, view: View) -> None:
    assert store.namespace == ""
    admin = view(store, "admin")
    assert isinstance(admin, Store)
    assert isinstance(admin.sync, SyncStore)
    assert isinstance(admin.aio, AsyncStore)
    assert admin.namespace == "admin"
    assert admin.location == store.location
    assert admin.sync.kind == store.sync.kind
    assert "@" not in store.location
    # Views of views, and back to the root.
    users = view(admin, "users")
    assert (users.namespace, users.location) == ("users", store.location)
    root = view(users, "")
    assert root.namespace == ""
    store.sync.issue("alice", T0, T0 + 900)
    assert root.sync.get_user("alice", T0) == store.sync.get_user("alice", T0)
    assert users.sync.get_user("alice", T0) is None
    # open_store applies the namespace to a store object, and leaves it alone without one.
    assert open_store(store) is store
    assert open_store(admin) is admin
    assert open_store(admin, namespace="admin") is admin


def test_a_memory_store_has_its_own_location() -> None:
    one, two = MemoryStore(), MemoryStore()
    assert one.location != two.location
    assert one.location.startswith("memory://")
    assert one.with_namespace("a").location == one.location


def test_nothing_written_in_one_namespace_shows_in_another(store: Store, view: View) -> None:
    admin = view(store, "admin")
    fill(store)
    empty(admin, T0 + 10)
    fill(admin, T0 + 5)
    root_before = state(store, T0 + 10)
    # The same ids, other records: epochs, generations and audit fields are each namespace's own.
    admin_state = state(admin, T0 + 10)
    assert admin_state["export"] == root_before["export"]
    assert admin_state["user"] != root_before["user"]
    assert admin_state["global"] != root_before["global"]
    # Writes in one never move the other.
    admin.sync.bump_user("bob", T0 + 20, "admin only", T0 + HOUR)
    admin.sync.bump_global(T0 + 20, "admin only")
    admin.sync.revoke_token("alice", "j2", T0 + 900, T0 + 20)
    admin.sync.revoke_session("s-live", T0 + 900, T0 + 20)
    assert state(store, T0 + 10) == root_before
    # A session of the root cannot be rotated through the view, nor its grace used.
    root_session = store.sync.get_session("s-live", T0 + 10)
    assert root_session is not None
    outcome = admin.sync.rotate_session("s-live", "alice", root_session.generation, T0 + 21, 5.0, T0 + 900)
    assert outcome.status is RotationStatus.REVOKED  # the view's own "s-live", revoked above
    assert store.sync.get_session("s-live", T0 + 10) == root_session
    # Wipe one: the other keeps everything.
    admin.sync.wipe()
    empty(admin, T0 + 10)
    assert state(store, T0 + 10) == root_before
    fill(admin, T0 + 30)
    admin_before = state(admin, T0 + 40)
    store.sync.wipe()
    empty(store, T0 + 40)
    assert state(admin, T0 + 40) == admin_before


def test_two_named_namespaces_are_apart_too(store: Store, view: View) -> None:
    users, admins = view(store, "users"), view(store, "admins")
    users.sync.issue("1", T0, T0 + 900)
    before = users.sync.get_user("1", T0)
    admins.sync.bump_user("1", T0 + 1, "admin 1 logged out", T0 + HOUR)
    admins.sync.bump_global(T0 + 1, "admins only")
    assert users.sync.get_user("1", T0 + 1) == before
    assert users.sync.get_global(T0 + 1) is not None
    assert users.sync.get_global(T0 + 1) != admins.sync.get_global(T0 + 1)
    assert [e.kind for e in admins.sync.export_entries(T0 + 1)].count("user") == 1
    # A session id means one session per namespace: an admin session does not belong to user "1".
    admins.sync.issue("root", T0, T0 + 900, "sid")
    assert users.sync.issue("1", T0, T0 + 900, "sid").session_generation is not None
    with pytest.raises(SessionOwnerError):
        admins.sync.issue("1", T0, T0 + 900, "sid")


def test_export_and_import_work_on_the_namespace_they_are_called_on(store: Store, view: View) -> None:
    fill(store)
    exported = list(store.sync.export_entries(T0 + 10))
    admin = view(store, "admin")
    assert admin.sync.import_entries(exported, T0 + 10) == len(exported)
    assert state(admin, T0 + 10) == state(store, T0 + 10)
    # Imported again into the root (its own data): nothing changes in either.
    store.sync.import_entries(exported, T0 + 10)
    assert state(store, T0 + 10) == state(admin, T0 + 10)
    admin.sync.wipe()
    assert sorted((e.kind, e.key) for e in store.sync.export_entries(T0 + 10)) == sorted(
        (e.kind, e.key) for e in exported
    )


def test_the_async_side_of_a_view_works_in_its_namespace(store: Store, view: View) -> None:
    named = view(store, "async-ns")

    async def scenario() -> None:
        stamps = await named.aio.issue("alice", T0, T0 + 900, "s1")
        await named.aio.revoke_token("alice", "j", T0 + 900, T0)
        state = await named.aio.fetch("alice", "j", "s1", T0 + 1)
        assert state.user is not None
        assert state.user.epoch == stamps.user_epoch
        assert state.jti_revoked
        assert named.sync.stats(T0 + 1).users == 1
        assert len(named.sync.export_entries(T0 + 1)) == 4
        assert await named.aio.revoke_session("s1", T0 + 900, T0 + 1, uid="alice") is True
        await named.aio.close()  # a view's close releases nothing the store still uses
        assert store.sync.stats(T0 + 1).users == 0

    asyncio.run(scenario())
    empty(store, T0 + 1)
    assert named.sync.fetch("alice", "j", "s1", T0 + 1).session_revoked


def test_closing_a_view_leaves_the_store_working(store: Store, view: View) -> None:
    named = view(store, "closing")
    named.sync.issue("alice", T0, T0 + 900)
    store.sync.issue("alice", T0, T0 + 900)
    named.sync.close()
    getattr(named, "close", named.sync.close)()
    assert store.sync.get_user("alice", T0) is not None
    assert store.sync.bump_user("alice", T0 + 1, None, T0 + HOUR).bumped_at == T0 + 1
    # The view itself keeps working too: it only borrowed the store's connections.
    assert named.sync.get_user("alice", T0) is not None


@pytest.mark.parametrize("name", ["a", "A", "9", "admin", "realm.users", "tenant_42-eu", "x" * 64])
def test_valid_namespace_names(name: str) -> None:
    assert check_namespace(name) == name
    assert MemoryStore().with_namespace(name).namespace == name


@pytest.mark.parametrize(
    "name",
    ["-a", ".a", "_a", "a b", "a~b", "a:b", "a/b", "a*", "{a}", "é", "a\n", " a", "x" * 65, None, 5, b"a"],
)
def test_invalid_namespace_names_are_configuration_errors(name: object) -> None:
    with pytest.raises(ConfigurationError, match="letters, digits"):
        check_namespace(name)
    with pytest.raises(ConfigurationError, match="letters, digits"):
        MemoryStore().with_namespace(name)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="letters, digits"):
        open_store("memory://", namespace=name)  # type: ignore[arg-type]


def test_an_invalid_namespace_is_refused_by_every_store(store: Store) -> None:
    with pytest.raises(ConfigurationError):
        store.with_namespace("no~tilde")


def test_open_store_opens_a_url_in_a_namespace() -> None:
    store = open_store("memory://", namespace="admin")
    assert store.namespace == "admin"
    store.sync.issue("alice", T0, T0 + 900)
    assert store.with_namespace("").sync.get_user("alice", T0) is None
    assert store.sync.get_user("alice", T0) is not None
    store.sync.close()


def test_a_snapshot_entry_of_one_namespace_imports_into_another() -> None:
    source, target = MemoryStore(namespace="a"), MemoryStore().with_namespace("b")
    source.sync.revoke_token("alice", "j", T0 + 900, T0)
    assert target.sync.import_entries(source.sync.export_entries(T0), T0) == 1
    assert target.sync.fetch("alice", "j", None, T0).jti_revoked
    assert list(target.with_namespace("a").sync.export_entries(T0)) == []
    assert list(source.sync.export_entries(T0)) == [SnapshotEntry("token", "j", expires_at=T0 + 900, uid="alice")]

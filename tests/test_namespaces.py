"""Two AuthX instances sharing one store keep their records apart (invariant 11), on every store.

Users and admins, two login types, two secrets: each install works in a namespace of the store,
by default AuthX's ``login_type``. Bumping admin "1" leaves user "1" alone, and a global bump of one
realm leaves the other's tokens alone. Two installs that would share a namespace by accident are
refused; sharing on purpose is said by naming the namespace. Key rotation is the counter-case: a
new deployment whose config keeps the old key as ``JWT_PREVIOUS_SECRET_KEY`` goes on accepting the
tokens the old one minted, because a namespace does not depend on the key.
"""

from __future__ import annotations

import gc
from typing import Any

import pytest
from authx import AuthX, AuthXConfig, RequestToken
from authx.exceptions import RevokedTokenError

import authx_epoch
from authx_epoch import ConfigurationError, EpochRevocation, Reason
from authx_epoch.stores import Store

OLD_KEY = "the-old-signing-key-0123456789abcdef0123"
NEW_KEY = "the-new-signing-key-0123456789abcdef0123"


def realm(
    store: Store, *, login_type: str | None = None, key: str = OLD_KEY, previous: str | None = None, **install: Any
) -> EpochRevocation:
    config = AuthXConfig(JWT_SECRET_KEY=key, JWT_PREVIOUS_SECRET_KEY=previous, JWT_TOKEN_LOCATION=["headers"])
    auth: AuthX[Any] = AuthX(config=config, login_type=login_type)
    revocation = authx_epoch.install(auth, store=store, **install)
    # Keep the instance alive with its service, as an app module does.
    revocation.auth = auth  # type: ignore[attr-defined]
    return revocation


def mint(revocation: EpochRevocation, uid: str) -> str:
    token: str = revocation.auth.create_access_token(uid=uid)  # type: ignore[attr-defined]
    return token


def test_two_login_types_keep_their_users_and_global_records_apart(store: Store) -> None:
    users = realm(store, login_type="user")
    admins = realm(store, login_type="admin")
    user_token, admin_token = mint(users, "1"), mint(admins, "1")
    admins.sync.bump_user_epoch("1", reason="admin logged out everywhere")
    assert users.sync.check(user_token).reason is Reason.ACCEPTED
    assert admins.sync.check(admin_token).reason is Reason.USER_EPOCH
    users.sync.bump_global_epoch(reason="users' key leaked")
    assert users.sync.check(user_token).reason is Reason.GLOBAL_EPOCH
    fresh_admin = mint(admins, "1")
    assert admins.sync.check(fresh_admin).reason is Reason.ACCEPTED
    assert users.store.namespace == "user"
    assert admins.store.namespace == "admin"


def test_explicit_namespaces_separate_instances_without_login_types(store: Store) -> None:
    users = realm(store, namespace="users")
    admins = realm(store, namespace="admins")
    user_token = mint(users, "1")
    admins.sync.bump_user_epoch("1")
    admins.sync.bump_global_epoch()
    assert users.sync.check(user_token).accepted


def test_a_second_realm_on_the_same_namespace_is_refused(store: Store) -> None:
    first = realm(store)
    with pytest.raises(ConfigurationError, match="already uses the root namespace"):
        realm(store, key=NEW_KEY)  # another secret: another realm
    with pytest.raises(ConfigurationError, match="namespace="):
        realm(store, key=NEW_KEY, namespace="")  # only one of the two said so
    assert first.store.namespace == ""


def test_instances_of_one_app_share_their_namespace(store: Store) -> None:
    # Test apps built per test, a restart in one process: the same keys and login type.
    first, second = realm(store), realm(store)
    token = mint(first, "alice")
    second.sync.bump_user_epoch("alice")
    assert first.sync.check(token).reason is Reason.USER_EPOCH


def test_naming_the_same_namespace_on_both_shares_it_on_purpose(store: Store) -> None:
    worker_one = realm(store, namespace="app")
    worker_two = realm(store, namespace="app")
    token = mint(worker_one, "alice")
    worker_two.sync.bump_user_epoch("alice")
    assert worker_one.sync.check(token).reason is Reason.USER_EPOCH


def test_a_new_deployment_with_the_old_key_as_previous_keeps_accepting_old_tokens(store: Store) -> None:
    old = realm(store)
    token = mint(old, "alice")
    del old
    gc.collect()  # the old deployment is gone; the new one starts on the same store
    new = realm(store, key=NEW_KEY, previous=OLD_KEY)
    request_token = RequestToken(token=token, location="headers")
    assert new.auth.verify_token(request_token).sub == "alice"  # type: ignore[attr-defined]
    assert new.sync.check(token).reason is Reason.ACCEPTED
    new.sync.bump_user_epoch("alice")
    assert new.sync.check(token).reason is Reason.USER_EPOCH
    with pytest.raises(RevokedTokenError):
        new.auth.verify_token(request_token)  # type: ignore[attr-defined]


def test_a_login_type_that_is_no_namespace_name_says_to_pass_one(store: Store) -> None:
    with pytest.raises(ConfigurationError, match="namespace"):
        realm(store, login_type="web users!")


def test_an_installed_instance_is_not_kept_alive_by_the_library(store: Store) -> None:
    import weakref

    revocation = realm(store)
    auth = weakref.ref(revocation.auth)  # type: ignore[attr-defined]
    assert authx_epoch.installed(revocation.auth) is revocation  # type: ignore[attr-defined]
    del revocation
    gc.collect()
    assert auth() is None

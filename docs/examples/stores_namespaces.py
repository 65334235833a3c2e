"""Namespaces: users and admins, two AuthX instances, on one SQLite file."""

from authx import AuthX, AuthXConfig

import authx_epoch


def new_auth() -> AuthX:
    secret = "change-me-to-a-long-random-secret!"
    return AuthX(config=AuthXConfig(JWT_SECRET_KEY=secret))


shared_file = authx_epoch.open_store("sqlite:///realms.db")
users_auth, admins_auth = new_auth(), new_auth()
users = authx_epoch.install(
    users_auth, store=shared_file.with_namespace("users")
)
admins = authx_epoch.install(
    admins_auth, store=shared_file.with_namespace("admins")
)

user_token = users_auth.create_access_token(uid="1")
admins.sync.bump_user_epoch("1", reason="admin 1 logged out")  # not user "1"
admins.sync.bump_global_epoch(reason="admins only")
assert users.sync.check(user_token).accepted

assert users.store.location == admins.store.location  # one file...
namespaces = (users.store.namespace, admins.store.namespace)
assert namespaces == ("users", "admins")  # ...two namespaces

shared_file.close()  # the views share its connections: close the store itself

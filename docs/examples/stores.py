"""Stores: chosen by URL, or given as an object."""

import tempfile
from pathlib import Path

from authx import AuthX, AuthXConfig

import authx_epoch


def new_auth() -> AuthX:
    return AuthX(
        config=AuthXConfig(JWT_SECRET_KEY="change-me-to-a-long-random-secret!", JWT_TOKEN_LOCATION=["headers"])
    )


workdir = Path(tempfile.mkdtemp())

# --8<-- [start:urls]
memory = authx_epoch.install(new_auth(), store="memory://")  # one process: tests, development
relative = authx_epoch.install(new_auth(), store=f"sqlite:///{workdir / 'revocation.db'}")  # the default kind
shared = authx_epoch.SqliteStore(workdir / "shared.db")  # or build the store yourself
web = authx_epoch.install(new_auth(), store=shared)
# --8<-- [end:urls]

# --8<-- [start:shared]
# Two AuthX apps (think: two worker processes) on one SQLite file see each other's bumps.
worker_a, worker_b = new_auth(), new_auth()
revocation_a = authx_epoch.install(worker_a, store=f"sqlite:///{workdir / 'workers.db'}")
revocation_b = authx_epoch.install(worker_b, store=f"sqlite:///{workdir / 'workers.db'}")
token = worker_a.create_access_token(uid="alice")
assert revocation_b.sync.check(token).accepted
revocation_a.sync.bump_user_epoch("alice", reason="password_change")
assert revocation_b.sync.check(token).reason is authx_epoch.Reason.USER_EPOCH
# --8<-- [end:shared]

# --8<-- [start:bad]
try:
    authx_epoch.install(new_auth(), store="redis://localhost:6379/0?prefx=myapp")
except authx_epoch.ConfigurationError as error:
    print(f"refused at install(): {error}")  # "unknown option 'prefx' ... (did you mean 'prefix'?)"
else:
    raise AssertionError("a mistyped option was accepted")

# A store that cannot be reached now is no reason not to start: the app answers 503 where it
# needs the store, logs why, and its readiness check says so until the store is back.
unreachable = authx_epoch.install(new_auth(), store="sqlite:///no/such/directory/revocation.db")
assert not unreachable.sync.ready()
# --8<-- [end:bad]

# --8<-- [start:namespaces]
# Users and admins on one SQLite file, each AuthX instance in its own namespace.
shared_file = authx_epoch.open_store(f"sqlite:///{workdir / 'realms.db'}")
users_auth, admins_auth = new_auth(), new_auth()
users = authx_epoch.install(users_auth, store=shared_file.with_namespace("users"))
admins = authx_epoch.install(admins_auth, store=shared_file.with_namespace("admins"))
user_token = users_auth.create_access_token(uid="1")
admins.sync.bump_user_epoch("1", reason="admin 1 logged out")  # admin "1", not user "1"
admins.sync.bump_global_epoch(reason="admins only")
assert users.sync.check(user_token).accepted
assert users.store.location == admins.store.location  # one file...
assert (users.store.namespace, admins.store.namespace) == ("users", "admins")  # ...two namespaces
# --8<-- [end:namespaces]

shared_file.close()  # the views share its connections: close the store that owns them

assert memory.sync.stats().kind == "memory"
assert relative.sync.stats().kind == web.sync.stats().kind == "sqlite"

for service in (memory, relative, web, revocation_a, revocation_b):
    service.store.close()

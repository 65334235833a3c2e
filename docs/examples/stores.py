"""Stores: chosen by URL or given as objects; a wrong URL fails at install()."""

from authx import AuthX, AuthXConfig

import authx_epoch


def new_auth() -> AuthX:
    secret = "change-me-to-a-long-random-secret!"
    return AuthX(config=AuthXConfig(JWT_SECRET_KEY=secret))


# One process only: tests, development.
in_memory = authx_epoch.install(new_auth(), store="memory://")
# A file next to the app, shared by every worker process of the machine.
relative = authx_epoch.install(new_auth(), store="sqlite:///authx-epoch.db")
# Or build the store yourself and pass the object.
shared = authx_epoch.SqliteStore("shared.db")
web = authx_epoch.install(new_auth(), store=shared)

try:  # a URL that cannot be right fails at start-up, never in a request
    authx_epoch.install(new_auth(), store="redis://localhost:6379/0?prefx=app")
except authx_epoch.ConfigurationError as error:
    print(f"refused at install(): {error}")  # unknown option 'prefx'...
else:
    raise AssertionError("a mistyped option was accepted")

# A store that cannot be reached now is no reason not to start: the app
# answers 503 where it needs the store, logs why, and its readiness check
# says so until the store is back.
unreachable = authx_epoch.install(
    new_auth(), store="sqlite:///no/such/directory/authx-epoch.db"
)
assert not unreachable.sync.ready()

assert in_memory.sync.stats().kind == "memory"
assert relative.sync.stats().kind == web.sync.stats().kind == "sqlite"

for service in (in_memory, relative, web):
    service.store.close()  # when the app stops

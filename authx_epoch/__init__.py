"""authx-epoch: generation-counter token revocation for AuthX.

Every token is stamped with its user's epoch (and the global one) when it is minted. Bumping an
epoch revokes every older token of that user (or of everyone) at once; single tokens and
sessions are revoked through small records that expire with their tokens, and a session's refresh
token can be rotated with reuse detection (``create_token_pair``, ``rotate_refresh_token``). One AuthX
blocklist callback checks it all in one store lookup.

```python
revocation = authx_epoch.install(auth, store="sqlite:///authx-epoch.db", app=app)
await revocation.bump_user_epoch("alice", reason="password_change")
```
"""

from __future__ import annotations

from authx_epoch.claims import ClaimNames
from authx_epoch.decision import Decision, Reason
from authx_epoch.errors import (
    AuthxEpochError,
    ConfigurationError,
    InvalidArgumentError,
    InvalidTokenError,
    MissingAwaitError,
    RefreshTokenReusedError,
    SessionOwnerError,
    StoreUnavailableError,
)
from authx_epoch.integrations.authx import DEFAULT_STORE, install, installed
from authx_epoch.records import EpochRecord, RotationOutcome, RotationStatus, SessionRecord, Stamps, StoreStats
from authx_epoch.revocation import DecisionEvent, EpochRevocation, SyncEpochRevocation
from authx_epoch.sessions import SessionTokens
from authx_epoch.stores import MemoryStore, SqliteStore, open_store

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_STORE",
    "AuthxEpochError",
    "ClaimNames",
    "ConfigurationError",
    "Decision",
    "DecisionEvent",
    "EpochRecord",
    "EpochRevocation",
    "InvalidArgumentError",
    "InvalidTokenError",
    "MemoryStore",
    "MissingAwaitError",
    "Reason",
    "RefreshTokenReusedError",
    "RotationOutcome",
    "RotationStatus",
    "SessionOwnerError",
    "SessionRecord",
    "SessionTokens",
    "SqliteStore",
    "Stamps",
    "StoreStats",
    "StoreUnavailableError",
    "SyncEpochRevocation",
    "install",
    "installed",
    "open_store",
]

"""The on_decision hook: any callable sees every check's decision."""

from authx import AuthX, AuthXConfig

import authx_epoch
from authx_epoch import DecisionEvent, Reason

rejections: list[DecisionEvent] = []


def record_rejections(event: DecisionEvent) -> None:
    """Runs inside the check, on the request's path: keep it cheap."""
    if not event.decision.accepted:
        # uid, jti and session_id are ids, never the token itself.
        rejections.append(event)


auth = AuthX(
    config=AuthXConfig(JWT_SECRET_KEY="change-me-to-a-long-random-secret!")
)
revocation = authx_epoch.install(
    auth, store="memory://", on_decision=record_rejections
)

token = auth.create_access_token(uid="alice")
assert revocation.sync.check(token).accepted
revocation.sync.bump_user_epoch("alice", reason="logout_all")
assert not revocation.sync.check(token).accepted
assert [(e.uid, e.decision.reason) for e in rejections] == [
    ("alice", Reason.USER_EPOCH)
]

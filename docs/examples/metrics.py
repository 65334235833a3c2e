"""Metrics and logs: the on_decision hook, Prometheus counters and histogram, the authx_epoch logger."""

import asyncio
import logging

import httpx
from authx import AuthX, AuthXConfig, TokenPayload
from fastapi import Depends, FastAPI
from prometheus_client import CollectorRegistry, make_asgi_app

import authx_epoch
from authx_epoch import DecisionEvent, Reason
from authx_epoch.metrics import PrometheusMetrics

# The example uses a registry of its own so it can run twice in one process; an application
# usually leaves registry= out and uses prometheus_client's default one.
registry = CollectorRegistry()

# --8<-- [start:prometheus]
app = FastAPI()
auth = AuthX(config=AuthXConfig(JWT_SECRET_KEY="change-me-to-a-long-random-secret!", JWT_TOKEN_LOCATION=["headers"]))
auth.handle_errors(app)

metrics = PrometheusMetrics(registry=registry)
revocation = authx_epoch.install(auth, store="memory://", app=app, on_decision=metrics.observe)
app.mount("/metrics", make_asgi_app(registry=registry))  # Prometheus scrapes this
# --8<-- [end:prometheus]


@app.get("/me")
async def me(payload: TokenPayload = Depends(auth.access_token_required)) -> dict[str, str]:
    return {"uid": str(payload.sub)}


# --8<-- [start:hook]
rejections: list[DecisionEvent] = []


def record_rejections(event: DecisionEvent) -> None:
    """Any callable works as a hook; it runs inside the check, so keep it cheap and non-blocking."""
    metrics.observe(event)
    if not event.decision.accepted:
        # uid, jti and session_id are ids, never the token itself.
        rejections.append(event)


# --8<-- [end:hook]

previous_level = logging.getLogger("authx_epoch").level
# --8<-- [start:logging]
# The library logs under "authx_epoch": INFO for every rejection and bump (with the uid and the
# reason), WARNING for a global bump and for fail-open passes, ERROR for store outages.
logging.getLogger("authx_epoch").setLevel(logging.INFO)
# --8<-- [end:logging]


async def main() -> None:
    token = auth.create_access_token(uid="alice")
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app") as client:
        assert (await client.get("/me", headers=headers)).status_code == 200
        await revocation.bump_user_epoch("alice", reason="logout everywhere")
        assert (await client.get("/me", headers=headers)).status_code == 401
        exposition = (await client.get("/metrics/")).text
    # --8<-- [start:series]
    assert 'authx_epoch_decisions_total{outcome="accepted",reason="accepted"} 1.0' in exposition
    assert 'authx_epoch_decisions_total{outcome="rejected",reason="user_epoch"} 1.0' in exposition
    assert "authx_epoch_check_duration_seconds_count 2.0" in exposition
    # --8<-- [end:series]

    # A custom hook sees the same events: here, one service with its own hook.
    service = authx_epoch.EpochRevocation(revocation.store, on_decision=record_rejections)
    assert (await service.check(token)).reason is Reason.USER_EPOCH
    assert [(event.uid, event.decision.reason) for event in rejections] == [("alice", Reason.USER_EPOCH)]
    logging.getLogger("authx_epoch").setLevel(previous_level)  # the tests run every example in one process


if __name__ == "__main__":
    asyncio.run(main())

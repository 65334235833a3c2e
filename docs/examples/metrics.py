"""Metrics: Prometheus counters and a histogram of every revocation check."""

import asyncio

import httpx
from authx import AuthX, AuthXConfig, TokenPayload
from fastapi import Depends, FastAPI
from prometheus_client import CollectorRegistry, make_asgi_app

import authx_epoch
from authx_epoch.metrics import PrometheusMetrics

# An app usually leaves registry= out and uses prometheus_client's default.
registry = CollectorRegistry()
metrics = PrometheusMetrics(registry=registry)

app = FastAPI()
auth = AuthX(
    config=AuthXConfig(JWT_SECRET_KEY="change-me-to-a-long-random-secret!")
)
auth.handle_errors(app)
revocation = authx_epoch.install(
    auth, store="memory://", app=app, on_decision=metrics.observe
)
app.mount("/metrics", make_asgi_app(registry=registry))  # Prometheus scrapes it


@app.get("/me")
async def me(
    payload: TokenPayload = Depends(auth.access_token_required),
) -> dict[str, str]:
    return {"uid": str(payload.sub)}


async def main() -> None:
    headers = {
        "Authorization": f"Bearer {auth.create_access_token(uid='alice')}"
    }
    asgi = httpx.ASGITransport(app=app)  # calls the app in-process, no server
    async with httpx.AsyncClient(base_url="http://app", transport=asgi) as http:
        assert (await http.get("/me", headers=headers)).status_code == 200
        await revocation.bump_user_epoch("alice", reason="logout_all")
        assert (await http.get("/me", headers=headers)).status_code == 401
        scraped = (await http.get("/metrics/")).text

    decisions = "authx_epoch_decisions_total"
    assert f'{decisions}{{outcome="accepted",reason="accepted"}} 1.0' in scraped
    assert (
        f'{decisions}{{outcome="rejected",reason="user_epoch"}} 1.0' in scraped
    )
    assert "authx_epoch_check_duration_seconds_count 2.0" in scraped


if __name__ == "__main__":
    asyncio.run(main())

"""The Prometheus hook: counters by reason and a latency histogram, scraped from a real app."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry, make_asgi_app
from prometheus_client.parser import text_string_to_metric_families

from authx_epoch import ConfigurationError, Reason
from authx_epoch.metrics import CHECK_BUCKETS, PrometheusMetrics, outcome
from tests.conftest import FakeClock
from tests.test_observability import BreakableSqlite, serve

pytestmark = pytest.mark.anyio


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def breakable(tmp_path: Path) -> Iterator[BreakableSqlite]:
    target = BreakableSqlite(tmp_path)
    yield target
    target.store.close()


def decisions(registry: CollectorRegistry, reason: Reason) -> float:
    value = registry.get_sample_value(
        "authx_epoch_decisions_total", {"outcome": outcome(reason), "reason": reason.value}
    )
    assert value is not None
    return value


async def scrape(app: Any) -> dict[str, float]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
        response = await client.get("/metrics/")
    assert response.status_code == 200
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            labels = ",".join(f"{key}={value}" for key, value in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}"] = sample.value
    return samples


async def test_counts_decisions_by_reason_and_times_them(
    breakable: BreakableSqlite, clock: FakeClock, registry: CollectorRegistry
) -> None:
    metrics = PrometheusMetrics(registry=registry)
    served = serve(breakable.store, clock, on_decision=metrics.observe)
    served.app.mount("/metrics", make_asgi_app(registry=registry))
    auth, rev = served.auth, served.revocation

    every = await scrape(served.app)
    for reason in Reason:
        assert every[f"authx_epoch_decisions_total{{outcome={outcome(reason)},reason={reason.value}}}"] == 0

    alice, bob = auth.create_access_token(uid="alice"), auth.create_access_token(uid="bob")
    assert [await served.get(alice) for _ in range(3)] == [200, 200, 200]
    await rev.bump_user_epoch("alice", reason="logout everywhere")
    await rev.revoke_token(bob)
    assert [await served.get(token) for token in (alice, alice, bob)] == [401, 401, 401]
    breakable.break_()
    try:
        assert await served.get(alice) == 503
    finally:
        breakable.restore()

    assert decisions(registry, Reason.ACCEPTED) == 3
    assert decisions(registry, Reason.USER_EPOCH) == 2
    assert decisions(registry, Reason.TOKEN_REVOKED) == 1
    assert decisions(registry, Reason.STORE_UNAVAILABLE) == 1
    assert decisions(registry, Reason.GLOBAL_EPOCH) == 0
    count = registry.get_sample_value("authx_epoch_check_duration_seconds_count")
    total = registry.get_sample_value("authx_epoch_check_duration_seconds_sum")
    assert count == 7
    assert total is not None
    assert 0 < total < 7

    scraped = await scrape(served.app)
    assert scraped["authx_epoch_decisions_total{outcome=rejected,reason=user_epoch}"] == 2
    assert scraped["authx_epoch_check_duration_seconds_count{}"] == 7
    assert scraped["authx_epoch_check_duration_seconds_bucket{le=+Inf}"] == 7
    buckets = [key for key in scraped if key.startswith("authx_epoch_check_duration_seconds_bucket")]
    assert len(buckets) == len(CHECK_BUCKETS) + 1
    # No label holds a user id or a token id: the number of series is fixed.
    assert not any("alice" in key or "bob" in key for key in scraped)


def test_outcome_of_every_reason() -> None:
    accepting = {reason for reason in Reason if outcome(reason) == "accepted"}
    assert accepting == {Reason.ACCEPTED, Reason.NOT_OURS, Reason.FAIL_OPEN}


def test_a_second_instance_on_one_registry_is_refused_clearly(registry: CollectorRegistry) -> None:
    PrometheusMetrics(registry=registry)
    with pytest.raises(ConfigurationError, match="one PrometheusMetrics per registry"):
        PrometheusMetrics(registry=registry)
    other = PrometheusMetrics(registry=registry, namespace="second_app")
    assert other.decisions is not None
    assert registry.get_sample_value("second_app_check_duration_seconds_count") == 0


def test_missing_prometheus_client_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    with pytest.raises(ConfigurationError, match=r"authx-epoch\[prometheus\]"):
        PrometheusMetrics(registry=CollectorRegistry())

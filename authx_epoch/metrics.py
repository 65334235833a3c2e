"""Prometheus metrics for the revocation check, fed by the ``on_decision`` hook.

Needs the ``prometheus`` extra: ``pip install 'authx-epoch[prometheus]'``.

```python
metrics = PrometheusMetrics()
authx_epoch.install(auth, store, app=app, on_decision=metrics.observe)
```

Two series are exported (with the default ``namespace``):

* ``authx_epoch_decisions_total{outcome, reason}``: a counter of checks, by outcome
  (``accepted`` or ``rejected``) and ``Reason`` (``accepted``, ``user_epoch``, ``token_revoked``,
  ``store_unavailable``...). Every pair starts at zero, so rates and alerts work from the first scrape.
* ``authx_epoch_check_duration_seconds``: a histogram of how long each check took, store
  lookup included, with buckets from 50 µs to 1 s.

Labels hold only the outcome and the reason, never a user id or a token id, so the number of
series is fixed whatever the traffic.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Optional

from authx_epoch.decision import Reason
from authx_epoch.errors import ConfigurationError
from authx_epoch.revocation import DecisionEvent

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

#: Histogram buckets (seconds): a check costs microseconds in memory, up to milliseconds over a network.
CHECK_BUCKETS: tuple[float, ...] = (
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
)

#: The reasons that let a token through; every other reason is a rejection (or a 503).
_ACCEPTING = frozenset({Reason.ACCEPTED, Reason.NOT_OURS, Reason.FAIL_OPEN})


class PrometheusMetrics:
    """Counts decisions by reason and times checks, for Prometheus.

    Pass ``metrics.observe`` as ``on_decision`` to ``install()`` (or ``EpochRevocation``). One
    instance registers its series once; share it between every AuthX instance of the process.

    Args:
        registry: Where to register the series; by default ``prometheus_client.REGISTRY``,
            which ``prometheus_client.make_asgi_app()`` and ``start_http_server()`` expose.
        namespace: The prefix of the series names.
        buckets: The histogram's upper bounds, in seconds.

    Raises:
        ConfigurationError: ``prometheus_client`` is not installed, or series of the same names
            are already registered in ``registry`` (create one instance and share it).
    """

    def __init__(
        self,
        *,
        registry: Optional[CollectorRegistry] = None,
        namespace: str = "authx_epoch",
        buckets: Sequence[float] = CHECK_BUCKETS,
    ) -> None:
        """Create and register the counter and the histogram."""
        try:
            import prometheus_client
        except ImportError as exc:
            raise ConfigurationError(
                "PrometheusMetrics needs prometheus_client: pip install 'authx-epoch[prometheus]'"
            ) from exc
        target = registry if registry is not None else prometheus_client.REGISTRY
        try:
            self.decisions = prometheus_client.Counter(
                "decisions",
                "Revocation checks, by outcome and reason.",
                labelnames=("outcome", "reason"),
                namespace=namespace,
                registry=target,
            )
            self.duration = prometheus_client.Histogram(
                "check_duration_seconds",
                "Time taken by one revocation check, store lookup included.",
                namespace=namespace,
                buckets=tuple(buckets),
                registry=target,
            )
        except ValueError as exc:
            raise ConfigurationError(
                f"cannot register the authx-epoch metrics: {exc}; create one PrometheusMetrics per registry "
                "and share it, or pass another registry= or namespace="
            ) from exc
        # Bound children, so that observe() is two dictionary lookups and no label formatting.
        self._children = {
            reason: self.decisions.labels(outcome=outcome(reason), reason=reason.value) for reason in Reason
        }

    def observe(self, event: DecisionEvent) -> None:
        """Record one decision: the ``on_decision`` hook."""
        self._children[event.decision.reason].inc()
        self.duration.observe(event.duration)


def outcome(reason: Reason) -> str:
    """Return ``"accepted"`` for the reasons that let a token through, ``"rejected"`` otherwise."""
    return "accepted" if reason in _ACCEPTING else "rejected"


__all__ = ["CHECK_BUCKETS", "PrometheusMetrics", "outcome"]

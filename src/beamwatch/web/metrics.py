"""`GET /metrics`: beamwatch for Prometheus (prometheus-client's text format).

Read from memory at each scrape (the engine's counters, the self-monitor's last
store figures), never from the store: a scrape costs microseconds and works while
the store is away — that is when it matters. Names are prefixed `beamwatch_`.
One registry per app, no process-global state.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector


@dataclass
class Snapshot:
    """What a scrape shows; built by the composition (`web/server.py`)."""

    beamline: str
    checks: dict[str, int] = field(default_factory=dict)  # severity name -> count
    muted_or_acked: dict[str, int] = field(default_factory=dict)  # "acked" -> count
    samples: dict[str, int] = field(default_factory=dict)  # source -> samples so far
    transitions: int = 0
    notifications_sent: int = 0
    notification_failures: int = 0  # attempts that failed (retried or not)
    outbox_due: int | None = None  # None: not read yet
    outbox_oldest_age: float | None = None
    store_write_errors: int = 0
    quarantined: int = 0
    loop_lag: float = 0.0
    tasks: int = 0  # asyncio tasks on the engine's loop
    last_tick_age: float | None = None
    healthy: bool = True
    leader: bool = True  # this instance decides and sends (an HA pair's standby: False)


class _Collector(Collector):
    def __init__(self, snapshot: Callable[[], Snapshot]):
        self.snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        s = self.snapshot()
        labels = ["beamline"]

        def gauge(name: str, doc: str, value: float | None) -> GaugeMetricFamily:
            g = GaugeMetricFamily(f"beamwatch_{name}", doc, labels=labels)
            if value is not None:
                g.add_metric([s.beamline], value)
            return g

        def counter(name: str, doc: str, value: float) -> CounterMetricFamily:
            c = CounterMetricFamily(f"beamwatch_{name}", doc, labels=labels)
            c.add_metric([s.beamline], value)
            return c

        checks = GaugeMetricFamily("beamwatch_checks", "Checks by alarm severity",
                                   labels=[*labels, "severity"])
        for severity, n in sorted(s.checks.items()):
            checks.add_metric([s.beamline, severity], n)
        yield checks
        yield gauge("checks_acked", "Checks in alarm and acknowledged",
                    s.muted_or_acked.get("acked", 0))
        samples = CounterMetricFamily("beamwatch_samples", "Samples received, by source",
                                      labels=[*labels, "source"])
        for source, n in sorted(s.samples.items()):
            samples.add_metric([s.beamline, source], n)
        yield samples
        yield counter("transitions", "Alarm transitions decided", s.transitions)
        yield counter("notifications_sent", "Notifications delivered", s.notifications_sent)
        yield counter("notification_failures", "Delivery attempts that failed",
                      s.notification_failures)
        yield gauge("outbox_due", "Notifications due and not yet delivered", s.outbox_due)
        yield gauge("outbox_oldest_due_seconds", "Age of the oldest undelivered notification",
                    s.outbox_oldest_age)
        yield counter("store_write_errors", "Failed attempts to store a decided batch",
                      s.store_write_errors)
        yield counter("quarantined", "Rows the store refused for good", s.quarantined)
        yield gauge("event_loop_lag_seconds", "How late the event loop runs", s.loop_lag)
        yield gauge("event_loop_tasks", "asyncio tasks alive on the event loop", s.tasks)
        yield gauge("last_tick_age_seconds", "Seconds since the engine last ticked",
                    s.last_tick_age)
        yield gauge("healthy", "1 while beamwatch does its job (as /healthz)", int(s.healthy))
        yield gauge("leader", "1 on the instance that decides and sends; 0 on a standby",
                    int(s.leader))


def router(snapshot: Callable[[], Snapshot]) -> APIRouter:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(snapshot))
    routes = APIRouter()

    @routes.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return routes

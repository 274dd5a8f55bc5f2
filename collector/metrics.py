"""Prometheus metrics of one collector app (own registry, so several apps can live in a test)."""

from __future__ import annotations

from typing import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class CollectorMetrics:
    def __init__(self, gauges: dict[str, tuple[str, Callable[[], float]]] | None = None) -> None:
        self.registry = CollectorRegistry()
        for name, (doc, read) in (gauges or {}).items():  # values owned elsewhere (spool depth ...)
            Gauge(name, doc, registry=self.registry).set_function(read)
        self.accepted = Counter("moneytrail_events_accepted", "Events accepted", ["route"], registry=self.registry)
        self.rejected = Counter(
            "moneytrail_events_rejected", "Requests or events refused, by reason", ["route", "reason"], registry=self.registry
        )
        self.publish_seconds = Histogram(
            "moneytrail_publish_seconds", "Time to make accepted events durable on the bus", registry=self.registry,
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )

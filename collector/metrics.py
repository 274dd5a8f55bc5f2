"""Prometheus metrics of one collector app (own registry, so several apps can live in a test).

The counters and the histogram that every request touches are plain numbers: they are updated and
read (/metrics) only on the event-loop thread, so they need none of prometheus_client's per-update
locks (its Histogram.observe walks the buckets in Python under a lock: ~0.6 us a request)."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator
from typing import Callable

from prometheus_client import CollectorRegistry, Gauge
from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString


class Count:
    """One label combination's count."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1) -> None:
        self.value += amount


class LoopCounter:
    """A labelled counter for the event-loop thread: `labels(...)` gives a Count to `inc`."""

    def __init__(self, name: str, doc: str, labelnames: tuple[str, ...], registry: CollectorRegistry) -> None:
        self.name, self.doc, self.labelnames = name, doc, labelnames
        self._children: dict[tuple[str, ...], Count] = {}
        registry.register(self)

    def labels(self, *values: str) -> Count:
        child = self._children.get(values)
        if child is None:
            if len(values) != len(self.labelnames):
                raise ValueError(f"{self.name} takes labels {self.labelnames}, got {values}")
            child = self._children[values] = Count()
        return child

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(self.name, self.doc, labels=self.labelnames)
        for values, child in list(self._children.items()):
            family.add_metric(values, child.value)
        yield family


class LoopHistogram:
    """A histogram for the event-loop thread: one bisect and two additions per observation."""

    def __init__(self, name: str, doc: str, buckets: tuple[float, ...], registry: CollectorRegistry) -> None:
        self.name, self.doc = name, doc
        self._bounds = tuple(float(b) for b in buckets) + (float("inf"),)
        self._counts = [0] * len(self._bounds)
        self._sum = 0.0
        registry.register(self)

    def observe(self, value: float) -> None:
        self._counts[bisect_left(self._bounds, value)] += 1  # the first bucket whose bound is >= value
        self._sum += value

    def collect(self) -> Iterator[Metric]:
        cumulative, buckets = 0, []
        for bound, count in zip(self._bounds, self._counts):
            cumulative += count
            buckets.append((floatToGoString(bound), cumulative))
        yield HistogramMetricFamily(self.name, self.doc, buckets=buckets, sum_value=self._sum)


class CollectorMetrics:
    def __init__(self, gauges: dict[str, tuple[str, Callable[[], float]]] | None = None) -> None:
        self.registry = CollectorRegistry()
        for name, (doc, read) in (gauges or {}).items():  # values owned elsewhere (spool depth ...)
            Gauge(name, doc, registry=self.registry).set_function(read)
        self.accepted = LoopCounter("moneytrail_events_accepted", "Events accepted", ("route",), self.registry)
        self.rejected = LoopCounter("moneytrail_events_rejected", "Requests or events refused, by reason",
                                    ("route", "reason"), self.registry)
        self.publish_seconds = LoopHistogram(
            "moneytrail_publish_seconds", "Time to make accepted events durable on the bus",
            (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5), self.registry)

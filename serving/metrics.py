"""Prometheus metrics on a registry of the app's own (so several apps can live in one process, as in tests)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self.requests = Counter("crossdeploy_requests", "Inference requests by model, version, protocol and status",
                                ("model", "version", "protocol", "status"), registry=self.registry)
        self.phase = Histogram("crossdeploy_request_phase_seconds",
                               "Server-side time per request phase: queue, decode, inference, encode",
                               ("model", "protocol", "phase"), buckets=BUCKETS, registry=self.registry)
        self.latency = Histogram("crossdeploy_request_seconds", "Server-side time of a whole inference request",
                                 ("model", "protocol"), buckets=BUCKETS, registry=self.registry)
        self.models = Gauge("crossdeploy_models_loaded", "Served model versions by state", ("state",), registry=self.registry)
        self.in_flight = Gauge("crossdeploy_requests_in_flight", "Requests being handled now", registry=self.registry)
        self._children: dict[tuple, object] = {}
        self.rejected = Counter("crossdeploy_requests_rejected", "Requests refused before decoding, by reason",
                                ("reason",), registry=self.registry)

    def child(self, metric, *labels: str):
        """metric.labels(*labels), cached: labels() takes a lock and builds a key on every call."""
        key = (id(metric), labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found

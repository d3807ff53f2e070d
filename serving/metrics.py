"""Prometheus metrics on a registry of the app's own (so several apps can live in one process, as in tests).

The per-request instruments are plain counters and bucket tallies that the event loop bumps without a lock
(everything that touches them runs on the loop); a collector turns them into Prometheus families only when
/metrics is scraped. prometheus_client's own Counter and Histogram take a lock and walk their buckets on
every call, which on a sub-millisecond request is a measurable share of the gateway's own work.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from typing import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from crossdeploy.errors import (
    ArtifactError, CrossdeployError, InferenceFailed, InferenceTimeout, InvalidInput, ModelNotFound, ModelNotReady,
    Overloaded, PayloadTooLarge, UnsupportedMediaType,
)

BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
PHASES = ("queue", "decode", "inference", "encode")
# The `kind` label of crossdeploy_failures_total, by error class (the nearest listed base class wins); another
# named error is its class name in snake case, anything else "internal".
KINDS = {InvalidInput: "invalid_input", ModelNotFound: "not_found", ModelNotReady: "not_ready",
         InferenceTimeout: "timeout", InferenceFailed: "runtime_error", PayloadTooLarge: "payload_too_large",
         UnsupportedMediaType: "unsupported_media_type", Overloaded: "overloaded", ArtifactError: "artifact_error"}


def kind_of(exc: BaseException) -> str:
    for cls in type(exc).__mro__:
        if cls in KINDS:
            return KINDS[cls]
    if isinstance(exc, CrossdeployError):
        return re.sub(r"(?<!^)(?=[A-Z])", "_", type(exc).__name__).lower()
    return "internal"


class Tally:
    """A histogram's state: one count per bucket (the last is +Inf) and the sum of what was observed."""

    __slots__ = ("counts", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(BUCKETS, seconds)] += 1
        self.total += seconds

    def buckets(self) -> list[tuple[str, int]]:
        cumulative, out = 0, []
        for bound, count in zip((*map(str, BUCKETS), "+Inf"), self.counts):
            cumulative += count
            out.append((bound, cumulative))
        return out


class Instruments:
    """What one (model, version, protocol) records per request."""

    __slots__ = ("success", "fail", "failures", "phases", "latency")

    def __init__(self) -> None:
        self.success = 0
        self.fail = 0
        self.failures: dict[str, int] = {}  # kind -> count (see KINDS)
        self.phases = {phase: Tally() for phase in PHASES}
        self.latency = Tally()


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self.models = Gauge("crossdeploy_models_loaded", "Served model versions by state", ("state",), registry=self.registry)
        self.rejected = Counter("crossdeploy_requests_rejected", "Requests refused before decoding, by reason",
                                ("reason",), registry=self.registry)
        self.in_flight: Callable[[], int] = lambda: 0  # admission tells (see admission.Admission)
        self.waiting: Callable[[], int] = lambda: 0
        self.entries: Callable[[], list] = lambda: []  # the served versions (the gateway tells)
        self._instruments: dict[tuple[str, str, str], Instruments] = {}
        self.registry.register(RequestCollector(self))

    def instruments(self, model: str, version: str, protocol: str) -> Instruments:
        key = (model, version, protocol)
        found = self._instruments.get(key)
        if found is None:
            found = self._instruments[key] = Instruments()
        return found

    def items(self) -> list[tuple[tuple[str, str, str], Instruments]]:
        return list(self._instruments.items())


class RequestCollector:
    """The per-request instruments as Prometheus families, built at scrape time."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator:
        requests = CounterMetricFamily("crossdeploy_requests", "Inference requests by model, version, protocol and status",
                                       labels=("model", "version", "protocol", "status"))
        phase = HistogramMetricFamily("crossdeploy_request_phase_seconds",
                                      "Server-side time per request phase: queue, decode, inference, encode",
                                      labels=("model", "protocol", "phase"))
        latency = HistogramMetricFamily("crossdeploy_request_seconds", "Server-side time of a whole inference request",
                                        labels=("model", "protocol"))
        failures = CounterMetricFamily("crossdeploy_failures", "Failed requests by model, version, protocol and kind "
                                       "(invalid_input, not_found, not_ready, timeout, runtime_error, payload_too_large, …)",
                                       labels=("model", "version", "protocol", "kind"))
        merged: dict[tuple[str, str], list[Instruments]] = {}
        for (model, version, protocol), instruments in self.metrics.items():
            requests.add_metric((model, version, protocol, "success"), instruments.success)
            requests.add_metric((model, version, protocol, "fail"), instruments.fail)
            for kind, count in list(instruments.failures.items()):
                failures.add_metric((model, version, protocol, kind), count)
            merged.setdefault((model, protocol), []).append(instruments)
        for (model, protocol), group in merged.items():
            for name in PHASES:
                _add_tally(phase, (model, protocol, name), [i.phases[name] for i in group])
            _add_tally(latency, (model, protocol), [i.latency for i in group])
        yield requests
        yield failures
        yield phase
        yield latency
        yield from self._health()
        yield GaugeMetricFamily("crossdeploy_requests_in_flight", "Requests being handled now", value=self.metrics.in_flight())
        yield GaugeMetricFamily("crossdeploy_requests_waiting", "Requests waiting for an in-flight slot",
                                value=self.metrics.waiting())


    def _health(self) -> Iterator:
        """Per served version, what the last health probe found (probes run when a ready endpoint is asked)."""
        ready = GaugeMetricFamily("crossdeploy_model_ready", "1 when the version was ready at its last health probe "
                                  "(loaded, no call past the deadline, the probe's inference answered)", labels=("model", "version"))
        growth = CounterMetricFamily("crossdeploy_probe_rss_growth_bytes", "Process RSS growth measured across this "
                                     "version's health-probe inferences: a leak hint (other variants' concurrent calls "
                                     "count too), not an attribution", labels=("model", "version"))
        for entry in self.metrics.entries():
            labels = (entry.name, str(entry.version))
            ready.add_metric(labels, 1.0 if entry.ready else 0.0)
            growth.add_metric(labels, entry.probe_rss_growth)
        yield ready
        yield growth


def _add_tally(family: HistogramMetricFamily, labels: tuple[str, ...], tallies: list[Tally]) -> None:
    """Versions of one model are summed: the histograms are labelled by model and protocol only."""
    total = Tally()
    for tally in tallies:
        total.counts = [a + b for a, b in zip(total.counts, tally.counts)]
        total.total += tally.total
    family.add_metric(labels, total.buckets(), total.total)

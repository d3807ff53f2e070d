"""Latency through a server, per variant and protocol: a closed-loop concurrency sweep and an open-loop
request-rate mode, with the server's own breakdown (queue, decode, inference, encode) read from /metrics.

Works against any server that speaks one of the four protocols (`--url`): a real Triton, TF Serving,
TorchServe, MLServer or KServe with a model of the same contract. The breakdown needs crossdeploy's metric
names and is left out for servers that do not expose them.
"""

from __future__ import annotations

import urllib.request
from typing import Callable

import numpy as np
import psutil
from prometheus_client.parser import text_string_to_metric_families

from .loadgen import LoadGenerator, Target, encode_request
from .requests import build
from .stats import Window, measure_stable, merge

METRIC_PROTOCOL = {"v2-json": "v2", "v2-binary": "v2", "tfserving": "tfserving", "torchserve": "torchserve"}
PHASES = ("queue", "decode", "inference", "encode")


def request_for(base: str, protocol: str, variant: str, x: np.ndarray) -> tuple[Target, bytes]:
    """The pre-encoded HTTP request each protocol's client would send for the batch `x` ([N, 8, 8])."""
    request = build(protocol, variant, {"image": x})
    target = Target.parse(base + request.path)
    return target, encode_request(target, request.body, request.headers)


def scrape(base: str) -> dict[tuple[str, str, str], tuple[float, float]] | None:
    """(model, protocol, phase) -> (sum seconds, count) of crossdeploy's phase histogram; None when the server
    has no /metrics (another server's metrics simply hold none of these keys)."""
    try:
        with urllib.request.urlopen(f"{base}/metrics", timeout=10) as response:
            text = response.read().decode()
    except OSError:
        return None
    found: dict[tuple[str, str, str], list[float]] = {}
    for family in text_string_to_metric_families(text):
        if family.name != "crossdeploy_request_phase_seconds":
            continue
        for sample in family.samples:
            key = (sample.labels.get("model"), sample.labels.get("protocol"), sample.labels.get("phase"))
            slot = found.setdefault(key, [0.0, 0.0])
            if sample.name.endswith("_sum"):
                slot[0] = sample.value
            elif sample.name.endswith("_count"):
                slot[1] = sample.value
    return {k: (v[0], v[1]) for k, v in found.items()}


def breakdown(before, after, model: str, protocol: str) -> dict[str, float] | None:
    if before is None or after is None:
        return None
    out = {}
    for phase in PHASES:
        key = (model, METRIC_PROTOCOL[protocol], phase)
        s0, c0 = before.get(key, (0.0, 0.0))
        s1, c1 = after.get(key, (0.0, 0.0))
        if c1 <= c0:
            return None
        out[phase] = (s1 - s0) / (c1 - c0) * 1e3
    return out


def tree_cpu_s(root: psutil.Process) -> float:
    """CPU seconds of a server and every process under it: a Ray engine serves from its replicas, not its root."""
    total = 0.0
    for process in [root, *root.children(recursive=True)]:
        try:
            times = process.cpu_times()
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
        total += times.user + times.system
    return total


class Sweep:
    """Runs gateway scenarios with one load generator; records the client's CPU share for the starvation check."""

    def __init__(self, base: str, server_pid: int | None, window_s: float, max_windows: int):
        self.base, self.window_s, self.max_windows = base, window_s, max_windows
        self.server = psutil.Process(server_pid) if server_pid else None
        self.generator = LoadGenerator()
        self.client_cpu_share: list[float] = []
        self.metrics = scrape(base) is not None

    def close(self) -> None:
        self.generator.close()

    def _window(self, fire: Callable[[], tuple[Window, float]], seen: list[Window]) -> Window:
        window, client_cpu = fire()
        self.client_cpu_share.append(client_cpu / window.elapsed_s if window.elapsed_s else 0.0)
        seen.append(window)
        return window

    def measure(self, variant: str, protocol: str, x: np.ndarray, *, concurrency: int | None = None,
                rate: float | None = None):
        """One repeat: windows until stable. The server's breakdown and CPU are read once around all of them
        (a /metrics scrape per window would cost more than a short window)."""
        target, request = request_for(self.base, protocol, variant, x)
        rows = len(x)
        if concurrency is not None:
            fire = lambda: self.generator.closed_loop(target, request, concurrency, self.window_s, rows)  # noqa: E731
        else:
            fire = lambda: self.generator.open_loop(target, request, rate, self.window_s, rows)  # noqa: E731
        seen: list[Window] = []
        before = scrape(self.base) if self.metrics else None
        cpu0 = tree_cpu_s(self.server) if self.server else None
        windows, stable = measure_stable(lambda: self._window(fire, seen), max_windows=self.max_windows)
        run = merge(windows, stable, rows)
        requests = sum(len(w.latencies_ms) for w in seen)
        if self.server and requests:
            run.cpu_ms_per_inference = (tree_cpu_s(self.server) - cpu0) * 1e3 / requests
        run.server_ms = breakdown(before, scrape(self.base) if self.metrics else None, variant, protocol)
        return run

    def warm(self, variant: str, protocol: str, x: np.ndarray) -> int:
        """A few requests before measuring; returns how many failed (a protocol the target does not speak)."""
        target, request = request_for(self.base, protocol, variant, x)
        window, _ = self.generator.closed_loop(target, request, 1, 0.1, len(x))
        return window.errors

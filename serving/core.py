"""The one inference path every protocol delegates to: decode -> queue -> infer -> encode, timed.

Routers translate the wire to numpy and back; this module checks the request against the model contract,
runs it on the variant's own executor and records Triton-style statistics and Prometheus metrics.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from crossdeploy.errors import InvalidInput, ModelNotFound

from .metrics import Metrics
from .registry import ModelRegistry, Served


@dataclass
class Timings:
    decode_ns: int = 0
    queue_ns: int = 0
    infer_ns: int = 0
    encode_ns: int = 0


def parse_version(name: str, version: str | None) -> int | None:
    if version is None or version == "":
        return None
    if not (version.isascii() and version.isdigit()):
        raise ModelNotFound(name, version)  # type: ignore[arg-type]
    return int(version)


def check_contract(served: Served, inputs: dict[str, np.ndarray], max_batch: int) -> None:
    """What adapters cannot be trusted to refuse kindly: batch bounds and non-finite values."""
    for name, array in inputs.items():
        if array.ndim == 0 or array.shape[0] == 0:
            raise InvalidInput(f"input '{name}' is empty")
        if array.shape[0] > max_batch:
            raise InvalidInput(f"input '{name}' has batch {array.shape[0]}, above the maximum of {max_batch}")
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            raise InvalidInput(f"input '{name}' contains NaN or infinity")


async def run(served: Served, inputs: dict[str, np.ndarray], timings: Timings, inline_ns: float) -> dict[str, np.ndarray]:
    """Inline on the event loop when the call is known to be cheaper than a thread hop's worth (`inline_ns`) and
    nothing of this version runs on its executor (so an adapter is never entered twice at once); otherwise on the
    version's own executor thread, so a slow variant queues only its own requests."""
    rows = next(iter(inputs.values())).shape[0]
    estimate = served.cost.estimate(rows)
    if served.pending == 0 and estimate is not None and estimate <= inline_ns:
        started = time.perf_counter_ns()
        outputs = served.runtime.predict(inputs)
        finished = time.perf_counter_ns()
        timings.queue_ns = 0
    else:
        submitted = time.perf_counter_ns()

        def work():
            began = time.perf_counter_ns()
            result = served.runtime.predict(inputs)
            return result, began, time.perf_counter_ns()

        future = asyncio.get_running_loop().run_in_executor(served.executor, work)
        served.pending += 1  # down when the thread is done, even if this request is cancelled meanwhile

        def done(_):
            served.pending -= 1
        future.add_done_callback(done)
        outputs, started, finished = await future
        timings.queue_ns = started - submitted
    timings.infer_ns = finished - started
    served.cost.observe(rows, timings.infer_ns)
    return outputs


class Gateway:
    """What routers get from the app: the registry, the limits and the instruments."""

    def __init__(self, registry: ModelRegistry, metrics: Metrics, max_batch: int, inline_ms: float = 0.0):
        self.registry = registry
        self.metrics = metrics
        self.max_batch = max_batch
        self.inline_ns = inline_ms * 1e6

    async def handle(self, protocol: str, name: str, version: str | None,
                     decode: Callable[[Served], dict[str, np.ndarray]],
                     encode: Callable[[Served, dict[str, np.ndarray]], object],
                     timings: Timings | None = None) -> object:
        """Runs one request; errors propagate (the app's handlers shape them) after being counted."""
        start = time.perf_counter_ns()
        timings = timings if timings is not None else Timings()
        served = None
        try:
            served = self.registry.get(name, parse_version(name, version))
            inputs = decode(served)
            check_contract(served, inputs, self.max_batch)
            timings.decode_ns = time.perf_counter_ns() - start
            outputs = await run(served, inputs, timings, self.inline_ns)
            encode_start = time.perf_counter_ns()
            response = encode(served, outputs)
            timings.encode_ns = time.perf_counter_ns() - encode_start
        except Exception:  # named errors become 4xx/5xx in the protocol's shape; every failure is counted
            self._record(served, protocol, "fail", start, timings)
            raise
        self._record(served, protocol, "success", start, timings, batch=next(iter(inputs.values())).shape[0])
        return response

    def load(self, name: str) -> list[Served]:
        """(Re)loads every version of `name` from the repository; blocking, call it off the event loop."""
        if name not in self.registry.repository.names():
            raise ModelNotFound(name)
        entries = self.registry.load(name)
        self.count_models()
        return entries

    def unload(self, name: str) -> None:
        self.registry.unload(name)
        self.count_models()

    def count_models(self) -> None:
        entries = self.registry.all()
        for state in ("READY", "UNAVAILABLE"):
            self.metrics.models.labels(state).set(sum(e.state == state for e in entries))

    def _record(self, served: Served | None, protocol: str, status: str, start: int, t: Timings, batch: int = 0) -> None:
        total = time.perf_counter_ns() - start
        model = served.name if served else "unknown"
        self.metrics.child(self.metrics.requests, model, str(served.version) if served else "", protocol, status).inc()
        if served is None:
            return
        stats = served.stats
        stats.phases[status].add(total)
        if status == "success":
            stats.phases["queue"].add(t.queue_ns)
            stats.phases["compute_input"].add(t.decode_ns)
            stats.phases["compute_infer"].add(t.infer_ns)
            stats.phases["compute_output"].add(t.encode_ns)
            stats.inference_count += batch
            stats.execution_count += 1
            stats.last_inference_ms = int(time.time() * 1000)
            for phase, ns in (("queue", t.queue_ns), ("decode", t.decode_ns), ("inference", t.infer_ns), ("encode", t.encode_ns)):
                self.metrics.child(self.metrics.phase, model, protocol, phase).observe(ns / 1e9)
            self.metrics.child(self.metrics.latency, model, protocol).observe(total / 1e9)

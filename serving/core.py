"""The one inference path every protocol delegates to: look up -> decode -> queue -> infer -> encode, timed.

Routes hand over a decode and an encode from their codecs. The codec checks each input once against the
variant's signature, so the runtime is called through `predict_validated`, which trusts it; this module runs
the call (inline or on the variant's own executor) and records Triton-style statistics and the metrics.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from crossdeploy.errors import ModelNotFound, ModelNotReady

from .metrics import Instruments, Metrics
from .registry import ModelRegistry, Retired, Served


RELOAD_RETRIES = 3  # a reload takes tens of ms: landing between look-up and submission 4 times running is a storm


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


async def run(served: Served, inputs: dict[str, np.ndarray], timings: Timings, inline_ns: float) -> dict[str, np.ndarray]:
    """Inline on the event loop when the call is known to be cheaper than a thread hop's worth (`inline_ns`),
    once nothing of this version runs on its executor (an adapter is never entered twice at once); otherwise on
    the version's own executor thread, so a slow variant queues only its own requests."""
    rows = next(iter(inputs.values())).shape[0]
    estimate = served.cost.estimate(rows)
    if estimate is not None and estimate <= inline_ns:
        while served.pending:  # a larger call is on the executor: wait for it rather than queue behind it there
            await served.executor_idle.wait()
        started = time.perf_counter_ns()
        outputs = served.runtime.predict_validated(inputs)
        finished = time.perf_counter_ns()
        timings.queue_ns = 0
    else:
        outputs, started, finished, timings.queue_ns = await _on_executor(served, inputs)
    timings.infer_ns = finished - started
    served.cost.observe(rows, timings.infer_ns)
    return outputs


async def _on_executor(served: Served, inputs: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], int, int, int]:
    submitted = time.perf_counter_ns()

    def work():
        began = time.perf_counter_ns()
        result = served.runtime.predict_validated(inputs)
        return result, began, time.perf_counter_ns()

    try:
        future = asyncio.get_running_loop().run_in_executor(served.executor, work)
    except RuntimeError:  # the executor refuses new calls once shut down, which only a (re)load does
        if served.retired:
            raise Retired(served.name) from None
        raise
    served.pending += 1  # down when the thread is done, even if this request is cancelled meanwhile
    served.executor_idle.clear()

    def done(_):
        served.pending -= 1
        if not served.pending:
            served.executor_idle.set()
    future.add_done_callback(done)
    outputs, started, finished = await future
    return outputs, started, finished, started - submitted


class Gateway:
    """What routers get from the app: the registry, the limits and the instruments."""

    def __init__(self, registry: ModelRegistry, metrics: Metrics, max_batch: int, inline_ms: float = 0.0,
                 max_body_bytes: int = 1 << 20):
        self.registry = registry
        self.metrics = metrics
        self.max_batch = max_batch
        self.max_body_bytes = max_body_bytes
        self.inline_ns = inline_ms * 1e6

    async def handle(self, protocol: str, name: str, version: str | None,
                     decode: Callable[[Served], dict[str, np.ndarray]],
                     encode: Callable[[Served, dict[str, np.ndarray]], object],
                     timings: Timings | None = None) -> object:
        """Runs one request: `decode(served)` must return inputs checked against `served`'s signature (a codec's
        decode does). Errors propagate, after being counted, for the app's handlers to shape."""
        start = time.perf_counter_ns()
        timings = timings if timings is not None else Timings()
        served = None
        try:
            for attempt in range(RELOAD_RETRIES + 1):
                served = self.registry.get(name, parse_version(name, version))
                inputs = decode(served)
                timings.decode_ns = time.perf_counter_ns() - start
                try:
                    outputs = await run(served, inputs, timings, self.inline_ns)
                    break
                except Retired:  # reloaded between look-up and submission: the replacement answers
                    if attempt == RELOAD_RETRIES:  # reloaded again each time: say so rather than loop
                        raise ModelNotReady(name, "reloaded repeatedly while this request waited; retry") from None
            encode_start = time.perf_counter_ns()
            response = encode(served, outputs)
            timings.encode_ns = time.perf_counter_ns() - encode_start
        except Exception:  # named errors become 4xx/5xx in the protocol's shape; every failure is counted
            self._record_failure(served, protocol, start)
            raise
        self._record_success(served, protocol, start, timings, next(iter(inputs.values())).shape[0])
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

    def _instruments(self, served: Served | None, protocol: str) -> Instruments:
        if served is None:
            return self.metrics.instruments("unknown", "", protocol)
        found = served.instruments.get(protocol)
        if found is None:
            found = served.instruments[protocol] = self.metrics.instruments(served.name, str(served.version), protocol)
        return found

    def _record_failure(self, served: Served | None, protocol: str, start: int) -> None:
        self._instruments(served, protocol).fail += 1
        if served is not None:
            served.stats.phases["fail"].add(time.perf_counter_ns() - start)

    def _record_success(self, served: Served, protocol: str, start: int, t: Timings, batch: int) -> None:
        total = time.perf_counter_ns() - start
        stats = served.stats
        phases = stats.phases
        phases["success"].add(total)
        phases["queue"].add(t.queue_ns)
        phases["compute_input"].add(t.decode_ns)
        phases["compute_infer"].add(t.infer_ns)
        phases["compute_output"].add(t.encode_ns)
        stats.inference_count += batch
        stats.execution_count += 1
        stats.last_inference_ms = int(time.time() * 1000)
        instruments = self._instruments(served, protocol)
        instruments.success += 1
        tallies = instruments.phases
        tallies["queue"].observe(t.queue_ns / 1e9)
        tallies["decode"].observe(t.decode_ns / 1e9)
        tallies["inference"].observe(t.infer_ns / 1e9)
        tallies["encode"].observe(t.encode_ns / 1e9)
        instruments.latency.observe(total / 1e9)

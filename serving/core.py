"""The one inference path every protocol delegates to: look up -> decode -> queue -> infer -> encode, timed.

Routes hand over a decode and an encode from their codecs. The codec checks each input once against the
variant's signature, so the runtime is called through `predict_validated`, which trusts it; this module runs
the call (inline or on the variant's own executor) and records Triton-style statistics and the metrics.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Awaitable, Callable, TypeVar

import numpy as np

from crossdeploy.errors import InvalidInput, ModelNotFound, ModelNotReady, VariantBusy

from . import execution
from .execution import on_executor, refuse_if_stalled, wait_idle
from .metrics import Instruments, Metrics, kind_of
from .registry import ModelRegistry, Retired, Served


T = TypeVar("T")


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


def refuse_if_busy(served: Served, rows: int) -> None:
    """503 at once when the version's executor already holds more estimated work than its queue budget: queueing
    behind it would only hold an in-flight slot the other variants could use. Checked before decoding (for one
    row: the cheapest a request can be) and again with the request's rows."""
    queued = served.pending + served.gated
    if queued:
        estimate = served.cost.estimate(rows)
        if estimate is not None and (queued + 1) * estimate > served.limits.queue_ns:
            raise VariantBusy(served.name, queued, served.limits.retry_after_s)


async def run(served: Served, inputs: dict[str, np.ndarray], timings: Timings, inline_ns: float) -> dict[str, np.ndarray]:
    """Inline on the event loop when the call is known to be cheaper than a thread hop's worth (`inline_ns`)
    and the version never overran its deadline, once nothing of this version runs on its executor (an adapter
    is never entered twice at once); otherwise on the version's own executor thread, so a slow variant queues
    only its own requests. Either way within the inference deadline (serving/execution.py)."""
    rows = next(iter(inputs.values())).shape[0]
    if served.remote is not None:
        outputs, timings.infer_ns, timings.queue_ns = await execution.remotely(served, inputs)
        return outputs
    refuse_if_stalled(served)
    estimate = served.cost.estimate(rows)
    if estimate is not None and estimate <= inline_ns and not served.inline_banned:
        if served.pending:  # a larger call is on the executor: wait for it rather than queue behind it there
            await wait_idle(served)
        outputs, started, finished = execution.inline(served, inputs)
        timings.queue_ns = 0
    else:
        refuse_if_busy(served, rows)
        outputs, started, finished, timings.queue_ns = await on_executor(served, inputs)
    timings.infer_ns = finished - started
    served.cost.observe(rows, timings.infer_ns)
    return outputs


class Gateway:
    """What routers get from the app: the registry, the limits and the instruments."""

    def __init__(self, registry: ModelRegistry, metrics: Metrics, max_batch: int, inline_ms: float = 0.0,
                 max_body_bytes: int = 1 << 20, inference_timeout_s: float = 10.0, probe_interval_s: float = 2.0,
                 queue_ms: float = 500.0, retry_after_s: int = 1, executor_slots: int | None = None):
        self.registry = registry
        self.metrics = metrics
        self.max_batch = max_batch
        self.max_body_bytes = max_body_bytes
        self.inline_ns = inline_ms * 1e6
        self.limits = registry.limits  # shared with every entry: a change reaches the loaded ones too
        self.limits.deadline_s = inference_timeout_s
        self.limits.probe_interval_s = probe_interval_s
        self.limits.queue_ns = queue_ms * 1e6
        self.limits.retry_after_s = retry_after_s
        self.limits.gate = execution.Gate(executor_slots) if executor_slots else None
        metrics.entries = registry.all

    async def receive(self, protocol: str, name: str, read: Awaitable[T]) -> T:
        """Awaits a route's body reading, counting a refusal there (too large, wrong media type) like a failed
        inference of the model it named."""
        try:
            return await read
        except Exception as exc:
            known = name in self.registry.names()  # an unknown name must not become a label
            self._count(self.metrics.instruments(name if known else "unknown", "", protocol), exc)
            raise

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
            decoded_for = inputs = None
            while True:
                served = self.registry.get(name, parse_version(name, version))
                refuse_if_busy(served, 1)
                if served.config != decoded_for:  # a reload that kept the config keeps the decoded inputs
                    inputs, decoded_for = decode(served), served.config
                    timings.decode_ns = time.perf_counter_ns() - start
                try:
                    outputs = await run(served, inputs, timings, self.inline_ns)
                    break
                except Retired:  # reloaded while it waited for the executor: the replacement answers
                    # A storm of reloads can retire the entry each time the request waits for the gate; it is
                    # retried until its deadline rather than a fixed number of times.
                    if time.perf_counter_ns() - start > self.limits.deadline_s * 1e9:
                        raise ModelNotReady(name, "reloaded repeatedly while this request waited; retry") from None
            encode_start = time.perf_counter_ns()
            response = encode(served, outputs)
            timings.encode_ns = time.perf_counter_ns() - encode_start
        except Exception as exc:  # named errors become 4xx/5xx in the protocol's shape; every failure is counted
            self._record_failure(served, protocol, start, exc)
            raise
        self._record_success(served, protocol, start, timings, next(iter(inputs.values())).shape[0])
        return response

    def load(self, name: str) -> list[Served]:
        """(Re)loads every version of `name` from the repository; blocking, call it off the event loop. A reload
        that fails for a version already serving leaves that version as it was and is the caller's 400."""
        if name not in self.registry.repository.names():
            raise ModelNotFound(name)
        entries = self.registry.load(name)
        self.count_models()
        kept = [e for e in entries if e.reload_error]
        if kept:
            raise InvalidInput(f"failed to load '{name}': {kept[0].reload_error}")
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

    @staticmethod
    def _count(instruments: Instruments, exc: BaseException) -> None:
        instruments.fail += 1
        kind = kind_of(exc)
        instruments.failures[kind] = instruments.failures.get(kind, 0) + 1

    def _record_failure(self, served: Served | None, protocol: str, start: int, exc: BaseException) -> None:
        self._count(self._instruments(served, protocol), exc)
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

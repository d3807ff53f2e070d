"""The served models: every variant and every version the repository holds, loaded through the runtime
adapters. A variant that fails to load is kept as UNAVAILABLE with its reason and never stops the others.

Concurrency: each served version owns a one-thread executor, so a slow variant only queues its own requests
and adapters that are not thread-safe (LiteRT, ExecuTorch) are only ever entered by one thread at a time.
A call whose estimated cost is below the inline budget runs on the event loop instead, when that version's
executor is idle: a thread hop costs more than a sub-millisecond inference (see serving/core.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from crossdeploy.errors import CrossdeployError, ModelNotFound, ModelNotReady, first_line
from crossdeploy.repository import V2_TO_NUMPY, ModelRepository, VariantConfig
from crossdeploy.runtimes import Runtime, runtime_class

log = logging.getLogger("crossdeploy.gateway")


class Retired(Exception):
    """The entry a request took was replaced by a (re)load before its call reached the executor: the request
    looks the model up again and runs on the replacement. Never leaves the gateway."""


PHASES = ("success", "fail", "queue", "compute_input", "compute_infer", "compute_output")


@dataclass
class Stat:
    count: int = 0
    ns: int = 0

    def add(self, ns: int) -> None:
        self.count += 1
        self.ns += ns


@dataclass
class Stats:
    """Triton's per-model statistics: a count and cumulative nanoseconds per phase."""

    phases: dict[str, Stat] = field(default_factory=lambda: {p: Stat() for p in PHASES})
    inference_count: int = 0
    execution_count: int = 0
    last_inference_ms: int = 0


@dataclass
class Cost:
    """A moving estimate of this version's inference time per row, which decides inline vs executor."""

    ns_per_row: float | None = None
    alpha: float = 0.2

    def observe(self, rows: int, ns: int) -> None:
        value = ns / max(rows, 1)
        if self.ns_per_row is None:
            self.ns_per_row = value
            return
        # One call stalled by the scheduler (another process took the core) must not flip a 30 us model onto
        # the executor: a sample counts for at most 4x the estimate, so only a sustained change moves it far.
        value = min(value, 4 * self.ns_per_row)
        self.ns_per_row = (1 - self.alpha) * self.ns_per_row + self.alpha * value

    def estimate(self, rows: int) -> float | None:
        return None if self.ns_per_row is None else self.ns_per_row * rows


@dataclass
class Limits:
    """What one call may take, shared by every entry so that a setting reaches entries loaded before it."""

    deadline_s: float = 10.0
    probe_interval_s: float = 2.0
    queue_ns: float = 500e6  # estimated work a version's executor may hold before it refuses more (503)
    retry_after_s: int = 1
    gate: object | None = None  # execution.Gate: how many executor calls run at once across variants


@dataclass
class Health:
    """The last health probe's verdict: a real batch-1 inference, and the artifact's files against the config."""

    ok: bool
    reason: str = ""
    at: float = 0.0  # time.monotonic() of the probe


def probe_inputs(config: VariantConfig) -> dict[str, np.ndarray]:
    """A batch-1 input of the variant's signature (zeros: every digits model takes a blank image)."""
    return {s.name: np.zeros([1 if d == -1 else d for d in s.shape], dtype=V2_TO_NUMPY[s.datatype]) for s in config.inputs}


@dataclass
class Served:
    name: str
    version: int
    config: VariantConfig | None
    runtime: Runtime | None
    load_state: str  # READY | UNAVAILABLE: whether the runtime loaded (and answered its warm-up)
    load_reason: str = ""
    load_seconds: float = 0.0
    limits: Limits = field(default_factory=Limits)
    stats: Stats = field(default_factory=Stats)
    executor: ThreadPoolExecutor | None = None
    cost: Cost = field(default_factory=Cost)
    pending: int = 0  # calls submitted to the executor and not finished (counted on the event loop)
    gated: int = 0  # calls waiting for the executor gate (serving/execution.py), not yet submitted
    executor_idle: asyncio.Event = field(default_factory=asyncio.Event)  # set while pending is 0
    instruments: dict = field(default_factory=dict)  # protocol -> metrics.Instruments, looked up once
    retired: bool = False  # replaced or unloaded: its executor takes no new calls
    running_since: int = 0  # perf_counter_ns when the executor's current call began (set by that thread); 0 idle
    inline_banned: bool = False  # a call overran the deadline once: never again on the event loop
    health: Health | None = None  # the last probe (serving/health.py)
    probing: object = None  # the probe in progress (an asyncio future), shared by concurrent health checks
    drift: str = ""  # the version folder's files no longer match the config (found by a probe)
    reload_error: str = ""  # a reload failed and this entry kept serving
    raised: int = 0  # calls the runtime failed (logged in full once)
    probe_rss_growth: int = 0  # bytes the process grew across this version's health probes (a leak hint)
    file_stats: dict = field(default_factory=dict)  # artifact path -> (size, mtime_ns, inode) when last hashed
    remote: object | None = None  # on the Ray engine: the family deployment that runs it (ray_engine/remote.py)

    @property
    def loaded(self) -> bool:
        return self.load_state == "READY"

    @property
    def stalled(self) -> bool:
        """A call has been running on the executor past the deadline: a one-thread executor cannot be freed,
        so the entry answers nothing until the call returns (or a reload replaces the entry)."""
        since = self.running_since
        return bool(since) and time.perf_counter_ns() - since > self.limits.deadline_s * 1e9

    @property
    def ready(self) -> bool:
        return self.loaded and not self.stalled and (self.health is None or self.health.ok)

    @property
    def state(self) -> str:
        return "READY" if self.ready else "UNAVAILABLE"

    @property
    def reason(self) -> str:
        """Why it is not ready, and what a ready entry should still say (its artifact changed, a reload failed)."""
        if not self.loaded:
            return self.load_reason
        notes = []
        if self.stalled:
            notes.append(f"a call has been running past the {self.limits.deadline_s:g} s inference deadline")
        if self.health is not None and not self.health.ok:
            notes.append(self.health.reason)
        return "; ".join(notes + [n for n in (self.drift, self.reload_error) if n])

    @cached_property
    def output_names(self) -> list[str]:
        return [spec.name for spec in self.config.outputs] if self.config else []

    @cached_property
    def version_label(self) -> str:
        return str(self.version)


class ModelRegistry:
    def __init__(self, repository: ModelRepository, threads: int = 2):
        self.repository = repository
        self.threads = threads
        self.limits = Limits()
        self._served: dict[str, dict[int, Served]] = {}
        self._ready: dict[tuple[str, int | None], Served] = {}

    def load_all(self) -> None:
        for name in self.repository.names():
            self.load(name)

    def load(self, name: str) -> list[Served]:
        """(Re)loads every version of `name`. The new entries are built first and swapped in whole, so requests
        never see the model missing; replaced entries are retired, not torn down under a running call. As in
        Triton, a version whose reload fails keeps its working entry (with `reload_error` saying why)."""
        try:
            config = self.repository.config(name)
            records = sorted(config.versions, key=lambda r: r.version)
        except CrossdeployError as exc:
            log.error("variant %s cannot be served: %s", name, exc)
            self._swap(name, self._keep_working(name, {0: Served(name, 0, None, None, "UNAVAILABLE", str(exc))}))
            return list(self._served[name].values())
        served = {record.version: self._load_version(name, config, record) for record in records}
        self._swap(name, self._keep_working(name, served))
        return list(self._served[name].values())

    def _load_version(self, name: str, config: VariantConfig, record) -> Served:
        start = time.perf_counter()
        try:
            runtime = runtime_class(config.format)(config, record, self.repository.version_dir(name, record.version), self.threads)
            runtime.load()
            try:  # the first call pays each framework's lazy set-up; a runtime that cannot run at all is not served
                runtime.predict_validated(probe_inputs(config))
            except Exception as exc:
                raise ModelNotReady(name, f"loaded, but its warm-up inference failed: {first_line(exc)}") from exc
            entry = Served(name, record.version, config, runtime, "READY", limits=self.limits)
            entry.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"{name}-v{record.version}")
        except Exception as exc:  # an unknown format or a framework that fails to import: this variant only
            log.error("variant %s version %s failed to load: %s", name, record.version, exc)
            entry = Served(name, record.version, config, None, "UNAVAILABLE", first_line(exc, limit=None), limits=self.limits)
        entry.load_seconds = time.perf_counter() - start
        return entry

    def _keep_working(self, name: str, fresh: dict[int, Served]) -> dict[int, Served]:
        """Triton's rule for a reload that fails: the version already loaded stays loaded, unchanged."""
        old = {v: e for v, e in self._served.get(name, {}).items() if e.loaded}
        failed = {v: e for v, e in fresh.items() if not e.loaded}
        if not old or not failed:
            return fresh
        if 0 in failed:  # the config itself no longer reads: every working version stays as it was
            kept, fresh = old, {}
        else:
            kept = {v: old[v] for v in failed if v in old}
        for version, entry in kept.items():
            cause = failed.get(version, failed.get(0))
            entry.reload_error = f"a reload failed ({cause.load_reason}); the copy loaded before keeps serving"
        return {**fresh, **kept}

    def _swap(self, name: str, entries: dict[int, Served] | None) -> None:
        old = self._served.get(name, {})
        if entries is None:
            self._served.pop(name, None)
        else:
            self._served[name] = entries
        self._ready = {}  # after the swap, and a new dict: see get()
        kept = {id(e) for e in (entries or {}).values()}
        for entry in (e for e in old.values() if id(e) not in kept):
            # Calls already on its executor finish there (shutdown cancels nothing queued); a request that holds
            # the entry but has not submitted yet is refused by the executor and re-resolves (Retired). The
            # runtime's memory goes with the last reference.
            entry.retired = True
            if entry.executor:
                entry.executor.shutdown(wait=False)

    def unload(self, name: str) -> None:
        self._swap(name, None)

    def close(self) -> None:
        for name in list(self._served):
            entries = self._served.pop(name)
            for entry in entries.values():
                entry.retired = True
                if entry.executor:
                    entry.executor.shutdown(wait=True)
                if entry.runtime and entry.runtime.ready:
                    entry.runtime.unload()

    def names(self) -> list[str]:
        return sorted(self._served)

    def versions(self, name: str) -> list[Served]:
        if name not in self._served:
            raise ModelNotFound(name)
        return [v for k, v in sorted(self._served[name].items()) if k != 0 or v.config is None]

    def lookup(self, name: str, version: int | None = None) -> Served:
        """The served entry (latest version by default), ready or not."""
        versions = self.versions(name)
        if version is None:
            loaded = [v for v in versions if v.loaded]
            return (loaded or versions)[-1]
        for entry in versions:
            if entry.version == version:
                return entry
        raise ModelNotFound(name, version)

    def get(self, name: str, version: int | None = None) -> Served:
        """The ready entry a request addresses, looked up once per (name, version) until the next (un)load."""
        cache = self._ready  # a reload replaces the dict: an entry found meanwhile goes to the discarded one
        entry = cache.get((name, version))
        if entry is not None:
            return entry
        entry = self.lookup(name, version)
        if not entry.loaded:  # one not healthy now is still called: its own error says more than a 503
            raise ModelNotReady(name, entry.reason or "failed to load")
        cache[(name, version)] = entry
        return entry

    def all(self) -> list[Served]:
        return [entry for name in self.names() for entry in self.versions(name)]

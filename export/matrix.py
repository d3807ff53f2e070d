"""`crossdeploy matrix SPEC...`: every applicable pathway on every model spec, as a deployability report.

Each spec is checked here first (a spec that cannot be used is one line and exit code 2, before anything is
written). Then one worker process per spec (export/matrix_worker.py) runs its pathways; this side watches
every step against the timeout and never stops at a failure: a hung converter is killed and reported, and a
new worker picks up the pathways left. With `register`, the passing variants are copied into the model
repository (each one staged and moved into place whole, with its sha256 and parity in its config).
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from crossdeploy.errors import CrossdeployError

from .exporting import CONVERTS
from .modelspec import LoadedSpec, SpecError, build_model, load_spec
from .pathways import BY_NAME, PATHWAYS
from crossdeploy.repository import ModelRepository

STATUSES = ("ok", "export failed", "conversion failed", "load failed", "runtime failed", "parity failed")
FAILED_AT_STEP = {"prepare": "export failed", "export": "export failed", "load": "load failed",
                  "run": "runtime failed", "latency": "runtime failed", "parity": "parity failed"}
DEFAULT_TIMEOUT = 600.0  # seconds per step; a cold AOTInductor compile of the digits models takes ~30 s


@dataclass
class PathwayResult:
    model: str
    framework: str
    pathway: str
    status: str
    required: bool
    step: str
    message: str = ""
    variant: str | None = None
    version: int | None = None
    size_bytes: int | None = None
    max_abs: float | None = None
    max_rel: float | None = None
    min_atol: float | None = None
    agreement: float | None = None
    accuracy: float | None = None
    reference_accuracy: float | None = None
    p50_ms: float | None = None
    seconds: float | None = None
    export_seconds: float | None = None
    precision: str | None = None
    chain: str | None = None
    tolerance: dict | None = None
    dynamic_batch: bool | None = None
    max_batch: int | None = None
    batch_note: str = ""
    declared_batch: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def batch(self) -> str:
        """How the served variant treats the batch axis."""
        if self.variant is None:
            return "—"
        if self.max_batch == 1:
            return "fixed 1, rows split"
        if self.max_batch:
            return f"≤ {self.max_batch}, split"
        if self.declared_batch and self.declared_batch.startswith("fixed"):
            return self.declared_batch
        return "dynamic" if self.dynamic_batch else "fixed"


@dataclass
class SpecRun:
    name: str
    framework: str
    path: str
    description: str
    samples: int
    labels: bool
    source_accuracy: float | None
    seconds: float
    workers: int
    log: str


@dataclass
class MatrixRun:
    specs: list[SpecRun]
    results: list[PathwayResult]
    created: str
    timeout: float
    registered: list[str] = field(default_factory=list)
    not_run: list[tuple[str, str]] = field(default_factory=list)  # (model, pathway) required but left out by --pathway

    @property
    def required_failures(self) -> list[PathwayResult]:
        return [r for r in self.results if r.required and not r.ok]

    def to_json(self) -> dict:
        return {"created": self.created, "timeout_seconds": self.timeout, "statuses": list(STATUSES),
                "passed": not self.required_failures, "registered": self.registered,
                "specs": [asdict(s) for s in self.specs],
                "results": [{**asdict(r), "batch": r.batch} for r in self.results]}


def load_specs(paths: list[Path], workdir: Path) -> list[LoadedSpec]:
    """Every spec loaded and its model built and checked on two samples, before any export: SpecError (exit 2)."""
    loaded = [load_spec(path, workdir) for path in paths]
    seen: dict[tuple[str, str], Path] = {}
    variants: dict[str, Path] = {}
    for spec in loaded:
        key = (spec.spec.name, spec.framework)
        if key in seen:
            raise SpecError(str(spec.path), f"name: '{spec.spec.name}' ({spec.framework}) is also {seen[key]}")
        seen[key] = spec.path
        for pathway in _pathways(spec, None):
            name = spec.spec.variant(pathway)
            if name in variants:
                raise SpecError(str(spec.path), f"variant_prefix: variant '{name}' would also come from {variants[name]}")
            variants[name] = spec.path
    for spec in loaded:
        build_model(spec)
    return loaded


def _pathways(spec: LoadedSpec, only: list[str] | None) -> list[str]:
    return [p.name for p in PATHWAYS if p.source == spec.framework and (not only or p.name in only)]


class _Worker:
    """A worker process and a thread that turns its event lines into a queue."""

    def __init__(self, job: dict, log):
        read, write = os.pipe()
        # The pipe is the worker's stdout; the worker moves it aside at start and points stdout at the log.
        # Its own session, so a kill takes the compilers and converters it started (gcc for AOTInductor) with it.
        self.process = subprocess.Popen([sys.executable, "-m", "crossdeploy.export.matrix_worker", json.dumps(job)],
                                        stdout=write, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
        os.close(write)
        self.events: queue.Queue = queue.Queue()
        self._reader = threading.Thread(target=self._read, args=(read,), daemon=True)
        self._reader.start()

    def _read(self, fd: int) -> None:
        with os.fdopen(fd) as lines:
            for line in lines:
                try:
                    self.events.put(json.loads(line))
                except ValueError:
                    continue
        self.events.put(None)  # the worker closed its end: it exited

    def kill(self) -> None:
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.process.wait()

    def finish(self, seconds: float = 30.0) -> None:
        """Waits for a worker that said it is done; one that hangs on its way out is killed."""
        try:
            self.process.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            pass
        self.kill()  # also reaps anything it left running in its session


def _log_tail(path: Path, lines: int = 3) -> str:
    try:
        text = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return "\n".join(line[:240] for line in text[-lines:])


def run_spec(spec: LoadedSpec, out: Path, workdir: Path, only: list[str] | None, timeout: float, threads: int,
             progress: Progress, task, latency: bool = True) -> tuple[SpecRun, list[PathwayResult]]:
    """Runs one spec's pathways to the end, whatever fails on the way."""
    start = time.perf_counter()
    remaining = _pathways(spec, only)
    results: dict[str, PathwayResult] = {}
    failed: dict[str, str] = {}
    accuracy = None
    workers = 0
    log_path = out / "logs" / f"{spec.spec.name}-{spec.framework}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    required = spec.spec.is_required
    with open(log_path, "w") as log:
        worker = None
        try:
            while remaining:
                workers += 1
                job = {"spec": str(spec.path), "workdir": str(workdir), "repository": str(out / "repository"),
                       "scratch": str(out / "scratch" / f"{spec.spec.name}-{spec.framework}-{workers}"),
                       "pathways": remaining, "failed": failed, "threads": threads, "latency": latency}
                worker = _Worker(job, log)
                current, step, deadline = None, "prepare", time.monotonic() + timeout
                ended = None
                started: dict[str, float] = {}
                while True:
                    try:
                        event = worker.events.get(timeout=max(0.1, min(1.0, deadline - time.monotonic())))
                    except queue.Empty:
                        if worker.process.poll() is not None and worker.events.empty():
                            worker._reader.join(timeout=2)  # its last lines may still be in the pipe
                            if not worker.events.empty():
                                continue
                            ended = f"the worker process ended with exit code {worker.process.returncode} in the {step} step"
                            worker.kill()
                            break
                        if time.monotonic() < deadline:
                            continue
                        worker.kill()
                        ended = f"timed out after {timeout:g} s in the {step} step (the worker was killed)"
                        break
                    if event is None:
                        worker.finish()
                        code = worker.process.returncode
                        if current is not None or code != 0:
                            ended = f"the worker process ended with exit code {code} in the {step} step"
                        break
                    kind = event["event"]
                    if kind == "step":
                        current, step, deadline = event["pathway"], event["step"], time.monotonic() + timeout
                        if current:
                            started.setdefault(current, time.perf_counter())
                            progress.update(task, description=f"{spec.spec.name} ({spec.framework}) {current}: {step}")
                    elif kind == "reference":
                        accuracy = event["accuracy"]
                    elif kind == "result":
                        fields = {k: v for k, v in event.items() if k in PathwayResult.__dataclass_fields__}
                        name = event["pathway"]
                        results[name] = PathwayResult(model=spec.spec.name, framework=spec.framework,
                                                      required=required(name), **fields)
                        results[name].seconds = round(time.perf_counter() - started.get(name, time.perf_counter()), 2)
                        if event["status"] in ("export failed", "conversion failed"):  # what dependents cannot build on
                            failed[name] = event["message"].splitlines()[0] if event["message"] else event["status"]
                        remaining = [p for p in remaining if p != name]
                        current = None
                        progress.advance(task)
                    elif kind == "done":
                        worker.finish()
                        break
                    elif kind == "error":  # the worker could not start on this spec at all
                        ended = event["message"]
                        worker.kill()
                        for name in remaining:
                            results[name] = PathwayResult(spec.spec.name, spec.framework, name, "export failed", required(name),
                                                          "prepare", ended)
                            progress.advance(task)
                        remaining = []
                        break
                if remaining and (not ended or step == "prepare"):
                    # The worker ended without a word on these (or never got past loading the model): no retry.
                    reason = ended or "the worker ended without a result for this pathway"
                    for name in remaining:
                        tail = "" if "timed out" in reason else f"\n{_log_tail(log_path)}"
                        results[name] = PathwayResult(spec.spec.name, spec.framework, name, FAILED_AT_STEP[step],
                                                      required(name), step, reason + tail)
                        progress.advance(task)
                    remaining = []
                if ended and remaining and current and current not in remaining:
                    # An ONNX file other pathways build on (not asked for itself) hung or crashed: it is not rebuilt;
                    # the next worker reports its dependents as export failed.
                    failed[current] = ended
                    continue
                if ended and remaining:
                    victim = current or remaining[0]
                    tail = _log_tail(log_path)
                    message = ended + (f"\n{tail}" if tail and "timed out" not in ended else "")
                    status = FAILED_AT_STEP.get(step, "export failed")
                    if status == "export failed" and victim in CONVERTS:
                        status = "conversion failed"
                    results[victim] = PathwayResult(spec.spec.name, spec.framework, victim, status, required(victim), step, message)
                    if step in ("prepare", "export"):  # a variant that exported but crashed at run time is still there
                        failed[victim] = ended
                    remaining = [p for p in remaining if p != victim]
                    progress.advance(task)
        finally:  # an interrupt or an error here must not leave a worker (or its gcc) running
            if worker is not None and worker.process.poll() is None:
                worker.kill()
    ordered = [results[p] for p in _pathways(spec, only) if p in results]
    record = SpecRun(name=spec.spec.name, framework=spec.framework, path=str(spec.path), description=spec.spec.description,
                     samples=len(next(iter(spec.x.values()))), labels=spec.y is not None, source_accuracy=accuracy,
                     seconds=round(time.perf_counter() - start, 1), workers=workers, log=str(log_path))
    return record, ordered


def check_register(specs: list[LoadedSpec], pathways: list[str] | None, target: ModelRepository) -> None:
    """Refuses, before anything runs, a variant name that already serves another model in `target`."""
    for spec in specs:
        for pathway in _pathways(spec, pathways):
            name = spec.spec.variant(pathway)
            if (target.root / name / "config.json").is_file():
                existing = target.config(name).model
                if existing != spec.spec.name:
                    raise CrossdeployError(f"--register: '{name}' in {target.root} serves model '{existing}', not "
                                           f"'{spec.spec.name}'; give the spec another variant_prefix")


def import_warnings(specs: list[LoadedSpec], registered: list[str], target: ModelRepository) -> list[str]:
    """Registered eager variants name their model code; a module found only beside its spec file is not
    importable by a gateway started elsewhere."""
    import importlib.util

    warnings = []
    for name in registered:
        config = target.config(name)
        if not config.entry:
            continue
        module = config.entry.partition(":")[0]
        found = importlib.util.find_spec(module)
        folder = next((s.path.parent for s in specs if s.spec.name == config.model), None)
        if found and found.origin and folder and Path(found.origin).resolve().is_relative_to(folder.resolve()) \
                and folder.resolve() != Path.cwd().resolve():
            warnings.append(f"{name}: the gateway imports '{module}' (from {folder}); start it with PYTHONPATH={folder}")
    return warnings


def register(results: list[PathwayResult], scratch: ModelRepository, target: ModelRepository) -> list[str]:
    """Copies every passing variant into `target`: staged, then moved into place by the repository."""
    registered = []
    for r in results:
        if not r.ok or r.variant is None:
            continue
        config = scratch.config(r.variant)
        record = config.version(r.version)
        staged = target.staging_dir(r.variant)
        shutil.rmtree(staged)
        shutil.copytree(scratch.version_dir(r.variant, r.version), staged)
        added, _ = target.add(config.model_copy(update={"versions": []}), staged)
        if record.parity is not None:
            target.set_parity(r.variant, added.version, record.parity)
        registered.append(r.variant)
    return registered


def run_matrix(specs: list[LoadedSpec], out: Path, workdir: Path, pathways: list[str] | None = None,
               timeout: float = DEFAULT_TIMEOUT, threads: int = 2, target: ModelRepository | None = None,
               latency: bool = True) -> MatrixRun:
    unknown = [p for p in pathways or [] if p not in BY_NAME]
    if unknown:
        raise CrossdeployError(f"unknown pathway(s) {', '.join(unknown)}; known: {', '.join(BY_NAME)}")
    if target is not None:
        check_register(specs, pathways, target)
    out.mkdir(parents=True, exist_ok=True)
    created = datetime.now(timezone.utc).isoformat(timespec="seconds")
    spec_runs, results = [], []
    total = sum(len(_pathways(s, pathways)) for s in specs)
    with tempfile.TemporaryDirectory(prefix=".matrix-", dir=out) as scratch:
        scratch_path = Path(scratch)
        with Progress(TextColumn("[bold]matrix {task.description:<52}"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn()) as progress:
            task = progress.add_task("", total=total)
            for spec in specs:
                record, spec_results = run_spec(spec, scratch_path, workdir, pathways, timeout, threads, progress, task, latency)
                logs = out / "logs"
                logs.mkdir(exist_ok=True)
                shutil.copyfile(record.log, logs / Path(record.log).name)
                record.log = str(logs / Path(record.log).name)
                spec_runs.append(record)
                results += spec_results
        run = MatrixRun(spec_runs, results, created, timeout)
        run.not_run = [(s.spec.name, p) for s in specs for p in _pathways(s, None)
                       if s.spec.is_required(p) and p not in _pathways(s, pathways)]
        if target is not None:
            run.registered = register(results, ModelRepository(scratch_path / "repository"), target)
    return run

"""Runs one spec's pathways in worker processes (export/matrix_worker.py) and watches every step.

A worker reports each step it starts and each result as one JSON line. This side gives every step the
timeout: a step that outlives it, or a converter that takes the interpreter down, costs that pathway only,
and a new worker picks up the pathways left, told which ones already failed so nothing built on them is
retried. A worker runs in its own session so a kill also takes the compilers and converters it started.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from rich.progress import Progress, TaskID

from .exporting import CONVERTS, pathway_names
from .matrix_results import FAILED_AT_STEP, PathwayResult, SpecRun
from .modelspec import LoadedSpec

# What a dependent pathway cannot build on: the source export or the conversion did not produce a file.
EXPORT_STATUSES = ("export failed", "conversion failed")


class Worker:
    """A worker process and a thread that turns its event lines into a queue (None: the worker closed its end)."""

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
        self.events.put(None)

    def exited_silently(self) -> bool:
        """The process is gone (though a child of it may hold the pipe open) and nothing it wrote is unread."""
        if self.process.poll() is None or not self.events.empty():
            return False
        self._reader.join(timeout=2)  # its last lines may still be in the pipe
        return self.events.empty()

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


@dataclass
class Watch:
    """Where a worker is: the pathway and step it last announced, and why it ended (None: it said it was done)."""

    deadline: float
    pathway: str | None = None
    step: str = "prepare"
    ended: str | None = None
    started: dict[str, float] = field(default_factory=dict)  # perf_counter at each pathway's first step


def log_tail(path: Path, lines: int = 3) -> str:
    try:
        text = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return "\n".join(line[:240] for line in text[-lines:])


class SpecSupervisor:
    """Takes one spec's pathways to a result each, whatever fails on the way."""

    def __init__(self, spec: LoadedSpec, out: Path, workdir: Path, only: list[str] | None, timeout: float,
                 threads: int, progress: Progress, task: TaskID, latency: bool = True, reports: Path | None = None,
                 int8_keep_float: int | None = None, remedies: list[str] | None = None):
        self.spec, self.out, self.workdir, self.timeout = spec, out, workdir, timeout
        self.reports, self.int8_keep_float = reports or out, int8_keep_float
        self.remedies = remedies  # the known remedies a failed pathway may be tried with (None: all; []: none)
        self.threads, self.progress, self.task, self.latency = threads, progress, task, latency
        self.asked = pathway_names(spec, only)
        self.remaining = list(self.asked)
        self.results: dict[str, PathwayResult] = {}
        self.failed: dict[str, str] = {}  # pathway -> why nothing can be built on it
        self.accuracy: float | None = None
        self.workers = 0
        self.log_path = out / "logs" / f"{spec.spec.name}-{spec.framework}.log"

    def run(self) -> tuple[SpecRun, list[PathwayResult]]:
        start = time.perf_counter()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "w") as log:
            worker = None
            try:
                while self.remaining:
                    self.workers += 1
                    worker = Worker(self._job(), log)
                    self._settle(self._watch(worker))
            finally:  # an interrupt or an error here must not leave a worker (or its gcc) running
                if worker is not None and worker.process.poll() is None:
                    worker.kill()
        spec = self.spec
        record = SpecRun(name=spec.spec.name, framework=spec.framework, path=str(spec.path),
                         description=spec.spec.description, samples=len(next(iter(spec.x.values()))),
                         labels=spec.y is not None, source_accuracy=self.accuracy,
                         seconds=round(time.perf_counter() - start, 1), workers=self.workers, log=str(self.log_path))
        return record, [self.results[p] for p in self.asked if p in self.results]

    def _job(self) -> dict:
        name = f"{self.spec.spec.name}-{self.spec.framework}"
        return {"spec": str(self.spec.path), "workdir": str(self.workdir), "repository": str(self.out / "repository"),
                "scratch": str(self.out / "scratch" / f"{name}-{self.workers}"), "pathways": self.remaining,
                "failed": self.failed, "threads": self.threads, "latency": self.latency,
                "reports": str(self.reports), "int8_keep_float": self.int8_keep_float, "remedies": self.remedies}

    def _watch(self, worker: Worker) -> Watch:
        """Follows the worker's events until it says it is done, ends, or outlives a step's timeout."""
        watch = Watch(deadline=time.monotonic() + self.timeout)
        while True:
            try:
                event = worker.events.get(timeout=max(0.1, min(1.0, watch.deadline - time.monotonic())))
            except queue.Empty:
                if worker.exited_silently():
                    watch.ended = f"the worker process ended with exit code {worker.process.returncode} in the {watch.step} step"
                elif time.monotonic() >= watch.deadline:
                    watch.ended = f"timed out after {self.timeout:g} s in the {watch.step} step (the worker was killed)"
                else:
                    continue
                worker.kill()
                return watch
            if self._handle(event, worker, watch):
                return watch

    def _handle(self, event: dict | None, worker: Worker, watch: Watch) -> bool:
        """Applies one event; True when the worker is finished with."""
        if event is None:  # the worker closed its end: it exited
            worker.finish()
            code = worker.process.returncode
            if watch.pathway is not None or code != 0:
                watch.ended = f"the worker process ended with exit code {code} in the {watch.step} step"
            return True
        kind = event["event"]
        if kind == "step":
            watch.pathway, watch.step, watch.deadline = event["pathway"], event["step"], time.monotonic() + self.timeout
            if watch.pathway:
                watch.started.setdefault(watch.pathway, time.perf_counter())
                self.progress.update(self.task, description=f"{self.spec.spec.name} ({self.spec.framework}) "
                                                            f"{watch.pathway}: {watch.step}")
        elif kind == "reference":
            self.accuracy = event["accuracy"]
        elif kind == "int8_curve":  # after its row's result: an extra that never changes the verdict
            self.results[event["pathway"]].int8_curve = event["curve"]
            watch.pathway = None
        elif kind == "result":
            self._record(event, watch)
            watch.pathway = None
        elif kind == "done":
            worker.finish()
            return True
        elif kind == "error":  # the worker could not start on this spec at all
            watch.ended = event["message"]
            worker.kill()
            for name in list(self.remaining):
                self._conclude(name, "export failed", "prepare", watch.ended)
            return True
        return False

    def _record(self, event: dict, watch: Watch) -> None:
        fields = {k: v for k, v in event.items() if k in PathwayResult.__dataclass_fields__}
        name = event["pathway"]
        result = PathwayResult(model=self.spec.spec.name, framework=self.spec.framework,
                               required=self.spec.spec.is_required(name), **fields)
        result.seconds = round(time.perf_counter() - watch.started.get(name, time.perf_counter()), 2)
        if result.status in EXPORT_STATUSES:
            self.failed[name] = result.message.splitlines()[0] if result.message else result.status
        self._store(result)

    def _conclude(self, name: str, status: str, step: str, message: str) -> None:
        self._store(PathwayResult(self.spec.spec.name, self.spec.framework, name, status,
                                  self.spec.spec.is_required(name), step, message))

    def _store(self, result: PathwayResult) -> None:
        self.results[result.pathway] = result
        self.remaining = [p for p in self.remaining if p != result.pathway]
        self.progress.advance(self.task)

    def _settle(self, watch: Watch) -> None:
        """What a stopped worker means for the pathways it left without a result."""
        if watch.step == "keep-float" and watch.pathway in self.results:
            self.results[watch.pathway].int8_curve = {"error": watch.ended}  # the row's own verdict stands
            return
        if not self.remaining:
            return
        if watch.ended is None or watch.step == "prepare":
            # It ended without a word on these, or never got past loading the model: a new worker would too.
            reason = watch.ended or "the worker ended without a result for this pathway"
            tail = "" if "timed out" in reason else f"\n{log_tail(self.log_path)}"
            for name in list(self.remaining):
                self._conclude(name, FAILED_AT_STEP[watch.step], watch.step, reason + tail)
            return
        if watch.pathway and watch.pathway not in self.remaining:
            # An ONNX file other pathways build on (not asked for itself) hung or crashed: it is not rebuilt;
            # the next worker reports its dependents as export failed.
            self.failed[watch.pathway] = watch.ended
            return
        victim = watch.pathway or self.remaining[0]
        tail = log_tail(self.log_path)
        message = watch.ended + (f"\n{tail}" if tail and "timed out" not in watch.ended else "")
        status = FAILED_AT_STEP.get(watch.step, "export failed")
        if status == "export failed" and victim in CONVERTS:
            status = "conversion failed"
        if watch.step in ("prepare", "export"):  # a variant that exported but crashed at run time is still there
            self.failed[victim] = watch.ended
        self._conclude(victim, status, watch.step, message)

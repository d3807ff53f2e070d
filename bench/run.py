"""`crossdeploy bench`: the latency comparison, end to end, into one results folder per run.

1. in-process, per variant: adapter and bare call, batch 1/8/64, 1 and 2 intra-op threads (fresh process each);
2. cold start and footprint per variant (fresh process each);
3. through the gateway, per variant and protocol: closed-loop concurrency sweep and open-loop request rates, with
   the server-side breakdown — against `--url`, or against each engine's gateway in turn (bench/run_gateway.py),
   with its cold start and memory (bench/engines.py);
4. every scenario repeated (default 3), judged with the tie rule; JSON + Markdown + PNGs.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from crossdeploy.errors import ConfigError, CrossdeployError
from crossdeploy.repository import ModelRepository
from crossdeploy.versions import INFERENCE_PACKAGES, version_of

from . import engines as gateway_engines
from .inprocess import ENGINE_MARK
from .provenance import git_revision, machine
from .requests import PROTOCOLS
from .results import BenchReport, ColdStart, EngineRun, Run, Scenario
from .run_gateway import engine_sweeps, url_sweep
from .stats import judge, scenario

QUICK_VARIANTS = ("torch-eager", "torch-onnx", "keras-savedmodel", "keras-tflite")


@dataclass
class Plan:
    variants: list[str]
    protocols: tuple[str, ...] = PROTOCOLS
    batches: tuple[int, ...] = (1, 8, 64)
    threads: tuple[int, ...] = (1, 2)
    concurrency: tuple[int, ...] = (1, 4, 16, 64)
    rates: tuple[float, ...] = (500.0, 2000.0)
    open_protocols: tuple[str, ...] = ("v2-binary",)
    repeats: int = 3
    window_s: float = 0.2
    gateway_window_s: float = 0.25
    max_windows: int = 10
    coldstart: bool = True
    quick: bool = False
    engines: tuple[str, ...] = ("inprocess",)
    alternatives: tuple[str, ...] = ()  # "variant@runtime": measured in process beside the variant's own runtime
    notes: list[str] = field(default_factory=list)

    @classmethod
    def make(cls, repository: ModelRepository, quick: bool, variants: list[str] | None, protocols: list[str] | None,
             repeats: int | None, url: str | None, engines: list[str] | None = None,
             concurrency: list[int] | None = None, runtimes: list[str] | None = None) -> "Plan":
        known = repository.names() if repository.exists() else []
        chosen = variants or (list(QUICK_VARIANTS) if quick else known)
        if not url and (unknown := [v for v in chosen if v not in known]):
            raise ConfigError("--variants", f"not in the repository: {', '.join(unknown)} (known: {', '.join(known)})")
        if protocols and (bad := [p for p in protocols if p not in PROTOCOLS]):
            raise ConfigError("--protocols", f"unknown: {', '.join(bad)} (known: {', '.join(PROTOCOLS)})")
        chosen_engines = gateway_engines.choose(engines, quick=quick, partial=bool(variants or protocols), url=url)
        plan = cls(variants=chosen, protocols=tuple(protocols or PROTOCOLS), engines=tuple(chosen_engines))
        if quick:
            plan.batches, plan.threads, plan.concurrency, plan.rates = (1, 64), (1,), (1, 16), (200.0,)
            plan.repeats, plan.window_s, plan.gateway_window_s, plan.max_windows = 1, 0.05, 0.2, 4
            plan.quick = True
        if repeats:
            plan.repeats = repeats
        if concurrency:
            if bad := [c for c in concurrency if c < 1]:
                raise ConfigError("--concurrency", f"must be at least 1: {', '.join(map(str, bad))}")
            plan.concurrency = tuple(sorted(set(concurrency)))
        if runtimes:
            plan.alternatives = alternatives(repository, chosen, runtimes, url)
            for key in plan.alternatives:
                runtime = key.partition(ENGINE_MARK)[2]
                plan.notes.append(f"{key}: the variant's own file run by {runtime} {version_of(runtime)}, in process only "
                                  "(the gateway serves each variant on its recorded runtime)")
        return plan


def alternatives(repository: ModelRepository, variants: list[str], runtimes: list[str], url: str | None) -> tuple[str, ...]:
    """`variant@runtime` for every chosen variant whose format the named runtime also runs."""
    from crossdeploy.runtimes import ALTERNATIVES

    known = sorted({r for named in ALTERNATIVES.values() for r in named})
    if url:
        raise ConfigError("--runtimes", "other runtimes are measured in process, and --url has no in-process part")
    if bad := [r for r in runtimes if r not in known]:
        raise ConfigError("--runtimes", f"unknown: {', '.join(bad)} (known: {', '.join(known)})")
    pairs = tuple(f"{v}{ENGINE_MARK}{r}" for v in variants for r in runtimes if r in ALTERNATIVES.get(repository.config(v).format, {}))
    if not pairs:
        raise ConfigError("--runtimes", f"none of the chosen variants can run on {', '.join(runtimes)}")
    return pairs


class LineProgress(Progress):
    """rich's Progress, which draws nothing when the output is not a terminal (CI logs, `> file`): there, every
    step also gets a plain line — at most one per `every` seconds per task, plus the last one."""

    every = 10.0

    def __init__(self, *columns, console: Console):
        super().__init__(*columns, console=console)
        self._plain, self._last = not console.is_terminal, {}

    def update(self, task_id, **fields):
        super().update(task_id, **fields)
        if self._plain and "description" in fields:
            task = self._tasks[task_id]
            now = time.monotonic()
            if now - self._last.get(task_id, -self.every) >= self.every or (task.total and task.completed >= task.total):
                self._last[task_id] = now
                done = f" [{task.completed:.0f}/{task.total:.0f}]" if task.total else ""
                self.console.print(f"{task.description}{done}", highlight=False)


def _worker(args: list[str], progress: Progress, task, out: Path) -> list | dict:
    command = [sys.executable, "-m", "crossdeploy.bench.inprocess", *args, "--out", str(out)]
    log = out.with_suffix(".log")  # a file, not a pipe: frameworks' warnings must never fill a pipe and block
    with open(log, "w") as errors:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors, text=True)
        for line in process.stdout:
            if line.startswith("PROGRESS"):
                _, step, total, *what = line.split()
                progress.update(task, completed=int(step), total=int(total), description=" ".join(what))
    stderr = log.read_text()
    if process.wait():
        raise CrossdeployError(f"in-process bench failed: {stderr.strip().splitlines()[-1] if stderr.strip() else process.returncode}")
    return json.loads(out.read_text())


def in_process(repository: Path, plan: Plan, progress: Progress, scratch: Path) -> list[Scenario]:
    found = []
    for threads in plan.threads:
        task = progress.add_task(f"in-process, {threads} thread(s)", total=None)
        args = ["--repository", str(repository), "--threads", str(threads), "--batches", ",".join(map(str, plan.batches)),
                "--repeats", str(plan.repeats), "--window", str(plan.window_s), "--max-windows", str(plan.max_windows)]
        for v in (*plan.variants, *plan.alternatives):
            args += ["--variant", v]
        for entry in _worker(args, progress, task, scratch / f"inprocess-t{threads}.json"):
            runs = [Run.model_validate(r) for r in entry.pop("runs")]
            entry.pop("kind")
            found.append(scenario("inprocess", runs, **entry))
        progress.update(task, description=f"in-process, {threads} thread(s): done")
    return found


def cold_starts(repository: Path, plan: Plan, progress: Progress, scratch: Path) -> list[ColdStart]:
    task = progress.add_task("cold start", total=len(plan.variants))
    out = []
    for name in plan.variants:
        progress.update(task, description=f"cold start {name}")
        result = _worker(["--repository", str(repository), "--coldstart", name], progress, task, scratch / f"cold-{name}.json")
        out.append(ColdStart.model_validate(result))
        progress.advance(task)
    return out


def verdicts(scenarios: list[Scenario], notes: list[str] | None = None):
    """The fastest pathway per group. A scenario with refused requests is not comparable and is left out."""
    groups: dict[str, dict[str, object]] = {}
    for s in scenarios:
        if any(r.errors for r in s.runs):
            if notes is not None:
                notes.append(f"left out of the verdict: {s.key()} had {sum(r.errors for r in s.runs)} refused or failed requests")
            continue
        if s.kind == "inprocess" and s.layer == "adapter":
            group = f"in-process, batch {s.batch}, {s.threads} thread{'s' if s.threads != 1 else ''}"
        elif s.kind == "gateway" and s.mode == "closed":
            group = f"gateway {s.protocol}, batch {s.batch}, C={s.concurrency}"
        elif s.kind == "gateway":
            group = f"gateway {s.protocol}, batch {s.batch}, {s.rate:g} req/s open loop"
        else:
            continue
        if s.engine and s.engine != "inprocess":  # pathways are compared within one engine, never across
            group += f", on {s.engine}"
        groups.setdefault(group, {})[s.variant] = s.p50
    return [judge(group, candidates) for group, candidates in groups.items()]


def measure_everything(repository: Path, plan: Plan, url: str | None, console: Console,
                       scratch: Path) -> tuple[list[Scenario], list[ColdStart], list[EngineRun]]:
    """In process and cold starts, then each engine's gateway; or only `url`, another server, as it is."""
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with LineProgress(*columns, console=console) as progress:
        if url:
            return url_sweep(url, plan, progress), [], []
        scenarios = in_process(repository, plan, progress, scratch)
        colds = cold_starts(repository, plan, progress, scratch) if plan.coldstart else []
        found, engines = engine_sweeps(repository, plan, progress, scratch)
        return scenarios + found, colds, engines


def point_latest(out: Path, folder: Path) -> None:
    latest = out / "latest"
    if latest.is_symlink() or latest.exists():
        latest.unlink()
    latest.symlink_to(folder.name)


def run_bench(repository: Path, out: Path, *, quick: bool = False, variants: list[str] | None = None,
              protocols: list[str] | None = None, repeats: int | None = None, url: str | None = None,
              engines: list[str] | None = None, concurrency: list[int] | None = None,
              runtimes: list[str] | None = None, console: Console | None = None) -> Path:
    """The whole comparison into a new timestamped folder under `out` (`latest` points at it). `engines`: the
    gateway engines measured one after the other (default: both on a full run; "inprocess" with --quick or
    --variants/--protocols). `concurrency`: the closed loop's connections in flight (default 1, 4, 16, 64).
    `runtimes`: other engines (openvino) that also run the chosen variants' files, in process only."""
    from .report import write_report

    console = console or Console()
    started = time.perf_counter()
    plan = Plan.make(ModelRepository(repository), quick, variants, protocols, repeats, url, engines, concurrency, runtimes)
    folder = out / datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    folder.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="crossdeploy-bench-"))
    try:
        scenarios, colds, engine_runs = measure_everything(repository, plan, url, console, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    for s in scenarios:
        if not s.stable:
            plan.notes.append(f"UNSTABLE: {s.key()} — its windows never agreed within 10 %; read its figures with care")
    report = BenchReport(
        created=datetime.now(timezone.utc), duration_s=time.perf_counter() - started, quick=plan.quick, machine=machine(),
        versions={p: version_of(p) for p in INFERENCE_PACKAGES}, git_revision=git_revision(),
        settings={k: v for k, v in vars(plan).items() if k != "notes"} | {"url": url, "repository": str(repository)},
        scenarios=scenarios, coldstart=colds, engines=engine_runs, verdicts=verdicts(scenarios, plan.notes), notes=plan.notes,
    )
    write_report(report, folder)
    point_latest(out, folder)
    console.print(f"results: {folder}/report.md, results.json, *.png ({report.duration_s:.0f} s)")
    return folder

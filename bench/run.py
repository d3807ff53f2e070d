"""`crossdeploy bench`: the latency comparison, end to end, into one results folder per run.

1. in-process, per variant: adapter and bare call, batch 1/8/64, 1 and 2 intra-op threads (fresh process each);
2. cold start and footprint per variant (fresh process each);
3. through the gateway (started here, or `--url`), per variant and protocol: closed-loop concurrency sweep and
   open-loop request rates, with the server-side breakdown;
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

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from crossdeploy.errors import ConfigError, CrossdeployError
from crossdeploy.repository import ModelRepository
from crossdeploy.versions import INFERENCE_PACKAGES, version_of

from .gateway_load import Sweep
from .provenance import git_revision, machine
from .requests import PROTOCOLS, build
from .results import BenchReport, ColdStart, Run, Scenario
from .servers import free_port, start, stop
from .stats import judge, spread

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
    notes: list[str] = field(default_factory=list)

    @classmethod
    def make(cls, repository: ModelRepository, quick: bool, variants: list[str] | None, protocols: list[str] | None,
             repeats: int | None, url: str | None) -> "Plan":
        known = repository.names() if repository.exists() else []
        chosen = variants or (list(QUICK_VARIANTS) if quick else known)
        if not url and (unknown := [v for v in chosen if v not in known]):
            raise ConfigError("--variants", f"not in the repository: {', '.join(unknown)} (known: {', '.join(known)})")
        if protocols and (bad := [p for p in protocols if p not in PROTOCOLS]):
            raise ConfigError("--protocols", f"unknown: {', '.join(bad)} (known: {', '.join(PROTOCOLS)})")
        plan = cls(variants=chosen, protocols=tuple(protocols or PROTOCOLS))
        if quick:
            plan.batches, plan.threads, plan.concurrency, plan.rates = (1, 64), (1,), (1, 16), (200.0,)
            plan.repeats, plan.window_s, plan.gateway_window_s, plan.max_windows = 1, 0.05, 0.2, 4
            plan.quick = True
        if repeats:
            plan.repeats = repeats
        return plan


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


def scenario(kind: str, runs: list[Run], **fields) -> Scenario:
    return Scenario(kind=kind, runs=runs, p50=spread(r.latency.p50 for r in runs), p99=spread(r.latency.p99 for r in runs),
                    throughput=spread(r.throughput for r in runs), stable=all(r.stable for r in runs), **fields)


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
        for v in plan.variants:
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


def through_gateway(base: str, server_pid: int | None, plan: Plan, progress: Progress, target: str) -> tuple[list[Scenario], Sweep]:
    from crossdeploy.models.data import load_split

    x = np.ascontiguousarray(load_split(seed=0).x_test[:1].astype(np.float32))
    sweep = Sweep(base, server_pid, plan.gateway_window_s, plan.max_windows)
    pairs = []
    for variant in plan.variants:
        for protocol in plan.protocols:
            if sweep.warm(variant, protocol, x):
                plan.notes.append(f"{target}: {variant} does not answer {protocol} requests; skipped")
            else:
                pairs.append((variant, protocol))
    steps = [(v, p, c, None) for v, p in pairs for c in plan.concurrency]
    steps += [(v, p, None, r) for v, p in pairs if p in plan.open_protocols for r in plan.rates]
    task = progress.add_task("gateway", total=len(steps) * plan.repeats)
    runs: dict[tuple, list[Run]] = {}
    for _ in range(plan.repeats):
        for variant, protocol, concurrency, rate in steps:
            where = f"C={concurrency}" if concurrency else f"{rate:g}/s open"
            progress.update(task, description=f"gateway {variant} {protocol} {where}")
            runs.setdefault((variant, protocol, concurrency, rate), []).append(
                sweep.measure(variant, protocol, x, concurrency=concurrency, rate=rate))
            progress.advance(task)
    scenarios = [scenario("gateway", r, variant=v, protocol=p, batch=len(x), concurrency=c, rate=rate,
                          mode="closed" if c else "open", target=target) for (v, p, c, rate), r in runs.items()]
    return scenarios, sweep


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
        groups.setdefault(group, {})[s.variant] = s.p50
    return [judge(group, candidates) for group, candidates in groups.items()]


def wrk_cross_check(base: str, variant: str, sweep: Sweep, plan: Plan) -> None:
    """The same closed-loop scenario with wrk and with our generator: if ours were starved, it would read lower."""
    if not shutil.which("wrk"):
        plan.notes.append("wrk not installed: the load generator was not cross-checked against it")
        return
    from crossdeploy.models.data import load_split

    from .wrk import run_wrk, script

    x = np.ascontiguousarray(load_split(seed=0).x_test[:1].astype(np.float32))
    request = build("v2-json", variant, {"image": x})
    with tempfile.TemporaryDirectory() as folder:
        theirs = run_wrk(base + request.path, script(Path(folder), "v2-json", request), 16, 3)["rps"]
    ours = sweep.measure(variant, "v2-json", x, concurrency=16).requests_per_s
    plan.notes.append(f"load generator check: {variant} v2-json C=16 — ours {ours:,.0f} req/s, wrk {theirs:,.0f} req/s "
                      f"({ours / theirs:.2f}×); the generator's CPU share peaked at {max(sweep.client_cpu_share):.2f} of a core")


def start_gateway(repository: Path, progress: Progress, scratch: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    task = progress.add_task("starting the gateway", total=None)
    server = start([sys.executable, "-m", "crossdeploy.cli", "serve", "--port", str(port), "--repository", str(repository)],
                   f"http://127.0.0.1:{port}/v2/health/ready", scratch / "gateway.log")
    progress.update(task, description="gateway started", total=1, completed=1)
    return server, f"http://127.0.0.1:{port}"


def check_load_generator(base: str, found: list[Scenario], sweep: Sweep, plan: Plan) -> None:
    if found and not plan.quick:  # on a fast variant: a slow one would not load the generator at all
        names = {s.variant for s in found if s.protocol == "v2-json"}
        if names:
            wrk_cross_check(base, "torch-onnx" if "torch-onnx" in names else sorted(names)[0], sweep, plan)
    elif sweep.client_cpu_share:
        plan.notes.append(f"the load generator's CPU share peaked at {max(sweep.client_cpu_share):.2f} of a core")


def measure_everything(repository: Path, plan: Plan, url: str | None, console: Console,
                       scratch: Path) -> tuple[list[Scenario], list[ColdStart]]:
    """In process and cold starts (unless another server is measured), then through the gateway or `url`."""
    scenarios: list[Scenario] = []
    colds: list[ColdStart] = []
    server = None
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    try:
        with LineProgress(*columns, console=console) as progress:
            if not url:
                scenarios += in_process(repository, plan, progress, scratch)
                if plan.coldstart:
                    colds = cold_starts(repository, plan, progress, scratch)
                server, base = start_gateway(repository, progress, scratch)
                target = "crossdeploy"
            else:
                base = target = url.rstrip("/")
            found, sweep = through_gateway(base, server.pid if server else None, plan, progress, target)
            scenarios += found
            try:
                check_load_generator(base, found, sweep, plan)
            finally:
                sweep.close()
    finally:
        if server:
            stop([server])
    return scenarios, colds


def point_latest(out: Path, folder: Path) -> None:
    latest = out / "latest"
    if latest.is_symlink() or latest.exists():
        latest.unlink()
    latest.symlink_to(folder.name)


def run_bench(repository: Path, out: Path, *, quick: bool = False, variants: list[str] | None = None,
              protocols: list[str] | None = None, repeats: int | None = None, url: str | None = None,
              console: Console | None = None) -> Path:
    from .report import write_report

    console = console or Console()
    started = time.perf_counter()
    plan = Plan.make(ModelRepository(repository), quick, variants, protocols, repeats, url)
    folder = out / datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    folder.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="crossdeploy-bench-"))
    try:
        scenarios, colds = measure_everything(repository, plan, url, console, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    for s in scenarios:
        if not s.stable:
            plan.notes.append(f"UNSTABLE: {s.key()} — its windows never agreed within 10 %; read its figures with care")
    report = BenchReport(
        created=datetime.now(timezone.utc), duration_s=time.perf_counter() - started, quick=plan.quick, machine=machine(),
        versions={p: version_of(p) for p in INFERENCE_PACKAGES}, git_revision=git_revision(),
        settings={k: v for k, v in vars(plan).items() if k != "notes"} | {"url": url, "repository": str(repository)},
        scenarios=scenarios, coldstart=colds, verdicts=verdicts(scenarios, plan.notes), notes=plan.notes,
    )
    write_report(report, folder)
    point_latest(out, folder)
    console.print(f"results: {folder}/report.md, results.json, *.png ({report.duration_s:.0f} s)")
    return folder

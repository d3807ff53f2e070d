"""`crossdeploy bench`, through the gateway: the closed-loop concurrency sweep and the open-loop rates per variant
and protocol, against `--url` or against each engine's gateway in turn (started, swept, its memory read, stopped
before the next one starts), and the load generator's own check."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from rich.progress import Progress

from .engines import engine_run, launch
from .gateway_load import Sweep
from .requests import build
from .results import EngineRun, Run, Scenario
from .servers import stop
from .stats import scenario

if TYPE_CHECKING:
    from .run import Plan


def through_gateway(base: str, server_pid: int | None, plan: "Plan", progress: Progress, target: str,
                    engine: str | None = None) -> tuple[list[Scenario], Sweep]:
    from crossdeploy.models.data import load_split

    x = np.ascontiguousarray(load_split(seed=0).x_test[:1].astype(np.float32))
    sweep = Sweep(base, server_pid, plan.gateway_window_s, plan.max_windows)
    where = f" ({engine})" if engine else ""
    pairs = []
    for variant in plan.variants:
        for protocol in plan.protocols:
            if sweep.warm(variant, protocol, x):
                plan.notes.append(f"{target}{where}: {variant} does not answer {protocol} requests; skipped")
            else:
                pairs.append((variant, protocol))
    steps = [(v, p, c, None) for v, p in pairs for c in plan.concurrency]
    if engine in (None, "inprocess"):
        steps += [(v, p, None, r) for v, p in pairs if p in plan.open_protocols for r in plan.rates]
    elif plan.rates:
        # offered past an engine's capacity, each open-loop window waits out the whole queue (a minute a point on Ray
        # on 2 cores), and the engines' comparison is the closed loop's
        plan.notes.append(f"open loop: run on the in-process engine only, not on {engine}; the engines are compared "
                          "in the closed loop")
    task = progress.add_task(f"gateway{where}", total=len(steps) * plan.repeats)
    runs: dict[tuple, list[Run]] = {}
    for _ in range(plan.repeats):
        for variant, protocol, concurrency, rate in steps:
            load = f"C={concurrency}" if concurrency else f"{rate:g}/s open"
            progress.update(task, description=f"gateway{where} {variant} {protocol} {load}")
            runs.setdefault((variant, protocol, concurrency, rate), []).append(
                sweep.measure(variant, protocol, x, concurrency=concurrency, rate=rate))
            progress.advance(task)
    scenarios = [scenario("gateway", r, variant=v, protocol=p, batch=len(x), concurrency=c, rate=rate,
                          mode="closed" if c else "open", target=target, engine=engine)
                 for (v, p, c, rate), r in runs.items()]
    return scenarios, sweep


def wrk_cross_check(base: str, variant: str, sweep: Sweep, plan: "Plan", where: str = "") -> None:
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
    plan.notes.append(f"load generator check{where}: {variant} v2-json C=16 — ours {ours:,.0f} req/s, wrk {theirs:,.0f} req/s "
                      f"({ours / theirs:.2f}×); the generator's CPU share peaked at {max(sweep.client_cpu_share):.2f} of a core")


def check_load_generator(base: str, found: list[Scenario], sweep: Sweep, plan: "Plan", where: str = "") -> None:
    if found and not plan.quick:  # on a fast variant: a slow one would not load the generator at all
        names = {s.variant for s in found if s.protocol == "v2-json"}
        if names:
            wrk_cross_check(base, "torch-onnx" if "torch-onnx" in names else sorted(names)[0], sweep, plan, where)
            return
    if sweep.client_cpu_share:
        plan.notes.append(f"the load generator's CPU share peaked at {max(sweep.client_cpu_share):.2f} of a core{where}")


def url_sweep(url: str, plan: "Plan", progress: Progress) -> list[Scenario]:
    base = url.rstrip("/")
    found, sweep = through_gateway(base, None, plan, progress, base)
    try:
        check_load_generator(base, found, sweep, plan)
    finally:
        sweep.close()
    return found


def engine_sweeps(repository: Path, plan: "Plan", progress: Progress, scratch: Path) -> tuple[list[Scenario], list[EngineRun]]:
    """Per engine: start its gateway, sweep it, read its memory, stop it — never two servers at once."""
    found: list[Scenario] = []
    engines: list[EngineRun] = []
    for engine in plan.engines:
        task = progress.add_task(f"starting the gateway ({engine})", total=None)
        server = None
        try:
            server, base, cold_start_s = launch(repository, engine, scratch / f"gateway-{engine}.log")
            progress.update(task, description=f"gateway ({engine}) ready in {cold_start_s:.1f} s", total=1, completed=1)
            scenarios, sweep = through_gateway(base, server.pid, plan, progress, "crossdeploy", engine)
            try:
                check_load_generator(base, scenarios, sweep, plan, f" ({engine})")
            finally:
                sweep.close()
            engines.append(engine_run(engine, cold_start_s, server.pid))
            found += scenarios
        finally:
            if server:
                stop([server])
    return found, engines

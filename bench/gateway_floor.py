"""`make bench-gateway`: the gateway against the strict floor (bench/floor.py), with wrk.

Both serve the same torch-onnx file, each as its own process started here, and get the same V2 JSON request at
batch 1 from wrk (one thread, keep-alive, loopback) at concurrency 1, 8 and 32. The two alternate within every
repeat, and which goes first alternates between repeats, so drift hits both alike; each figure is the median
over the repeats. Targets: at C=8 the gateway's throughput ≥ 0.9× the floor's, at C=32 its p99 ≤ 1.5× the
floor's. Then, unless --no-extras, the gateway alone (bench/gateway_extras.py). Report:
build/reports/gateway/gateway_floor.json (schema beside it; bench/floor_results.py describes every field) and
gateway_floor.md.

Another checkout of the gateway (a BEFORE figure) is measured by installing it apart and putting it first on the
gateway process's PYTHONPATH; that process prints which crossdeploy.serving it imported, and the report keeps it:
    git worktree add /tmp/before <commit>
    .venv/bin/pip install --no-deps --no-build-isolation --target /tmp/before-site /tmp/before
    .venv/bin/python -m crossdeploy.bench.gateway_floor --gateway-python-path /tmp/before-site \\
        [--gateway-repository DIR] --out build/reports/gateway-before
--gateway-repository serves the gateway from a repository in that checkout's own schema; its torch-onnx file must
be byte for byte the floor's.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import psutil
from rich.console import Console
from rich.table import Table

from crossdeploy.errors import CrossdeployError
from crossdeploy.repository import ModelRepository

from .floor_results import AtConcurrency, Figures, GatewayCode, GatewayFloorReport, Ratio, TargetCheck, WrkRun
from .provenance import git_revision, machine
from .requests import build
from .servers import free_port, start, stop
from .wrk import require_wrk, run_wrk, script

MODEL = "torch-onnx"
REQUEST = "V2 JSON, batch 1"
TARGETS = {"throughput_c8": (8, "rps", "min", 0.9), "p99_c32": (32, "p99", "max", 1.5)}
FLOOR = ("bench/floor.py: FastAPI, orjson in and out, onnxruntime with one intra-op and one inter-op thread and no "
         "spinning, inference inline on the event loop, no validation")
# -P keeps the working directory off sys.path: this checkout's crossdeploy/ would shadow --gateway-python-path.
LAUNCH = ("import runpy, crossdeploy.serving as s; print('crossdeploy.serving:', s.__file__, flush=True); "
          "runpy.run_module('crossdeploy.cli', run_name='__main__', alter_sys=True)")


@dataclass
class Options:
    repository: Path
    gateway_repository: Path | None
    gateway_python_path: Path | None
    inline_ms: float | None
    seconds: float
    repeats: int
    concurrency: tuple[int, ...]
    out: Path
    extras: bool


def onnx_file(root: Path) -> Path:
    """The latest version's model.onnx, found by the layout alone: another checkout's config schema may differ."""
    versions = [int(p.name) for p in (root / MODEL).iterdir() if p.name.isdigit()] if (root / MODEL).is_dir() else []
    if not versions:
        raise CrossdeployError(f"no {MODEL} variant in {root} (run `make pipeline` first)")
    return root / MODEL / str(max(versions)) / "model.onnx"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def start_gateway(options: Options, port: int, folder: Path) -> tuple[subprocess.Popen, str]:
    """The gateway process and the file it imported crossdeploy.serving from."""
    env = dict(os.environ)
    if options.gateway_python_path:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(options.gateway_python_path.resolve()), env.get("PYTHONPATH")]))
    repository = (options.gateway_repository or options.repository).resolve()
    extra = [] if options.inline_ms is None else ["--inline-ms", str(options.inline_ms)]
    command = [sys.executable, "-P", "-c", LAUNCH, "serve", "--port", str(port), "--repository", str(repository), *extra]
    log = folder / "gateway.log"
    process = start(command, f"http://127.0.0.1:{port}/v2/health/ready", log, env=env)
    said = [line for line in log.read_text().splitlines() if line.startswith("crossdeploy.serving: ")]
    return process, said[0].split(": ", 1)[1] if said else "unknown"


def one_run(url: str, lua: Path, target: str, concurrency: int, repeat: int, seconds: float, server: psutil.Process) -> WrkRun:
    before = server.cpu_times()
    result = run_wrk(url, lua, concurrency, seconds)
    after = server.cpu_times()
    wall = result["duration_us"] / 1e6
    return WrkRun(target=target, concurrency=concurrency, repeat=repeat, rps=result["rps"], p50_ms=result["p50_us"] / 1e3,
                  p90_ms=result["p90_us"] / 1e3, p99_ms=result["p99_us"] / 1e3, requests=result["requests"],
                  errors=result["errors"], wrk_cpu_cores=result["wrk_cpu_s"] / wall,
                  server_cpu_cores=((after.user + after.system) - (before.user + before.system)) / wall)


def measure(urls: dict[str, str], processes: dict[str, subprocess.Popen], lua: Path, options: Options,
            console: Console) -> list[WrkRun]:
    servers = {name: psutil.Process(p.pid) for name, p in processes.items()}
    for name, url in urls.items():  # warm-up, not measured: the first requests allocate and fill caches
        run_wrk(url, lua, 8, 2)
    order = ("floor", "gateway")
    steps = [(repeat, c, name) for repeat in range(options.repeats) for c in options.concurrency
             for name in (order if repeat % 2 == 0 else order[::-1])]
    runs = []
    for i, (repeat, c, name) in enumerate(steps, 1):
        console.log(f"[{i}/{len(steps)}] {name} C={c}")
        runs.append(one_run(urls[name], lua, name, c, repeat, options.seconds, servers[name]))
    return runs


def figures(runs: list[WrkRun]) -> Figures:
    median = lambda field: statistics.median(getattr(r, field) for r in runs)  # noqa: E731
    return Figures(rps=median("rps"), p50_ms=median("p50_ms"), p90_ms=median("p90_ms"), p99_ms=median("p99_ms"),
                   errors=sum(r.errors for r in runs), server_cpu_cores=median("server_cpu_cores"),
                   rps_all=[round(r.rps, 1) for r in runs])


def summarize(runs: list[WrkRun]) -> dict[str, AtConcurrency]:
    summary = {}
    for c in sorted({r.concurrency for r in runs}):
        gateway = figures([r for r in runs if r.concurrency == c and r.target == "gateway"])
        floor = figures([r for r in runs if r.concurrency == c and r.target == "floor"])
        summary[f"c{c}"] = AtConcurrency(concurrency=c, gateway=gateway, floor=floor, ratio=paired_ratio(runs, c))
    return summary


def paired_ratio(runs: list[WrkRun], concurrency: int) -> Ratio:
    """The median over repeats of gateway / floor within one repeat: the two run back to back, so a drift of
    the machine between repeats (seen here: ±30 % in req/s from one repeat to the next) cancels out."""
    by_repeat = {(r.repeat, r.target): r for r in runs if r.concurrency == concurrency}
    pairs = [(by_repeat[(n, "gateway")], by_repeat[(n, "floor")]) for n in sorted({n for n, _ in by_repeat})
             if (n, "gateway") in by_repeat and (n, "floor") in by_repeat]
    return Ratio(rps=statistics.median(g.rps / f.rps for g, f in pairs),
                 p50=statistics.median(g.p50_ms / f.p50_ms for g, f in pairs),
                 p99=statistics.median(g.p99_ms / f.p99_ms for g, f in pairs))


def check_targets(summary: dict[str, AtConcurrency]) -> dict[str, TargetCheck]:
    checks = {}
    for name, (c, figure, kind, bound) in TARGETS.items():
        if f"c{c}" in summary:
            ratio = getattr(summary[f"c{c}"].ratio, figure)
            checks[name] = TargetCheck(ratio=ratio, bound=bound, kind=kind, met=ratio >= bound if kind == "min" else ratio <= bound)
    return checks


def run(options: Options, console: Console) -> GatewayFloorReport:
    require_wrk()
    model = onnx_file(options.repository)
    if options.gateway_repository and sha256(onnx_file(options.gateway_repository)) != sha256(model):
        raise CrossdeployError(f"{onnx_file(options.gateway_repository)} differs from {model}: both servers must load one file")
    config, _ = ModelRepository(options.repository).get(MODEL)
    from crossdeploy.models.data import load_split

    samples = load_split(seed=0).x_test.astype("float32")
    options.out.mkdir(parents=True, exist_ok=True)
    load_average = os.getloadavg()
    ports = {"gateway": free_port(), "floor": free_port()}
    urls = {name: f"http://127.0.0.1:{port}/v2/models/{MODEL}/infer" for name, port in ports.items()}
    processes: dict[str, subprocess.Popen] = {}
    with tempfile.TemporaryDirectory(prefix="gateway-floor-") as scratch:
        lua = script(Path(scratch), "v2-json-b1", build("v2-json", MODEL, {config.inputs[0].name: samples[:1]}))
        try:
            with console.status("starting the gateway (every variant) and the floor…"):
                processes["gateway"], serving_module = start_gateway(options, ports["gateway"], options.out)
                processes["floor"] = start([sys.executable, "-m", "crossdeploy.bench.floor", "--model", str(model), "--port",
                                            str(ports["floor"])], f"http://127.0.0.1:{ports['floor']}/v2/health/ready",
                                           options.out / "floor.log")
            console.print(f"gateway code: {serving_module}")
            runs = measure(urls, processes, lua, options, console)
            extras = None
            if options.extras:
                from .gateway_extras import measure_extras

                extras = measure_extras(f"http://127.0.0.1:{ports['gateway']}", config.inputs[0].name, samples, Path(scratch),
                                        options.seconds, options.repeats, console)
        finally:
            stop(list(processes.values()))
    summary = summarize(runs)
    return GatewayFloorReport(
        created=datetime.now(timezone.utc), model=MODEL, model_sha256=sha256(model), request=REQUEST, seconds=options.seconds,
        repeats=options.repeats, runs=runs, summary=summary, targets=check_targets(summary), extras=extras,
        gateway=GatewayCode(serving_module=serving_module, repository=str(options.gateway_repository or options.repository),
                            python_path=str(options.gateway_python_path) if options.gateway_python_path else None,
                            inline_ms=options.inline_ms),
        floor=FLOOR, machine=machine(), load_average=load_average, git_revision=git_revision())


def markdown(report: GatewayFloorReport) -> str:
    lines = [f"The gateway against the strict floor — {report.floor}. Both serve {report.model} from one file; "
             f"{report.request}; wrk -t1 on loopback, {report.seconds:g} s per run; medians over {report.repeats} "
             f"repeat(s); each ratio is the median of gateway / floor within a repeat, whose two runs are back to back. "
             f"Gateway code: `{report.gateway.serving_module}`.",
             "", "| C | floor req/s | gateway req/s | ratio | floor p50 ms | gateway p50 ms | floor p99 ms | gateway p99 ms | ratio p99 |"
             " errors |", "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for s in report.summary.values():
        lines.append(f"| {s.concurrency} | {s.floor.rps:,.0f} | {s.gateway.rps:,.0f} | {s.ratio.rps:.2f}× | {s.floor.p50_ms:.2f} | "
                     f"{s.gateway.p50_ms:.2f} | {s.floor.p99_ms:.2f} | {s.gateway.p99_ms:.2f} | {s.ratio.p99:.2f}× | "
                     f"{s.floor.errors + s.gateway.errors} |")
    lines.append("")
    for name, t in report.targets.items():
        sign = "≥" if t.kind == "min" else "≤"
        lines.append(f"- {name}: **{t.ratio:.2f}×** (target {sign} {t.bound}×): {'met' if t.met else 'NOT MET'}")
    if report.extras:
        from .gateway_extras import extras_markdown

        lines += ["", *extras_markdown(report.extras)]
    lines += ["", f"Machine: {report.machine.cores} cores ({report.machine.processor}), load average at the start "
              f"{', '.join(f'{x:.2f}' for x in report.load_average)}; git {report.git_revision}."]
    return "\n".join(lines) + "\n"


def table(report: GatewayFloorReport) -> Table:
    t = Table(title="gateway vs floor (wrk, medians over repeats)", title_justify="left")
    for column in ("C", "floor req/s", "gateway req/s", "ratio", "floor p99 ms", "gateway p99 ms", "ratio p99"):
        t.add_column(column, justify="right")
    for s in report.summary.values():
        t.add_row(str(s.concurrency), f"{s.floor.rps:,.0f}", f"{s.gateway.rps:,.0f}", f"{s.ratio.rps:.2f}×",
                  f"{s.floor.p99_ms:.2f}", f"{s.gateway.p99_ms:.2f}", f"{s.ratio.p99:.2f}×")
    return t


def write(report: GatewayFloorReport, out: Path) -> None:
    (out / "gateway_floor.json").write_text(report.model_dump_json(indent=2) + "\n")
    (out / "gateway_floor.schema.json").write_text(json.dumps(GatewayFloorReport.model_json_schema(), indent=2) + "\n")
    (out / "gateway_floor.md").write_text(markdown(report))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="the gateway against the strict floor, with wrk")
    parser.add_argument("--repository", type=Path, default=Path("model_repository"))
    parser.add_argument("--gateway-repository", type=Path, default=None, help="serve the gateway from this one instead")
    parser.add_argument("--gateway-python-path", type=Path, default=None, help="run another gateway checkout installed here")
    parser.add_argument("--inline-ms", type=float, default=None, help="the gateway's inline budget (default: its own)")
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--concurrency", type=lambda s: tuple(int(c) for c in s.split(",")), default=(1, 8, 32))
    parser.add_argument("--out", type=Path, default=Path("build/reports/gateway"))
    parser.add_argument("--no-extras", dest="extras", action="store_false", help="only the comparison with the floor")
    options = Options(**vars(parser.parse_args(argv)))
    console = Console()
    try:
        report = run(options, console)
    except CrossdeployError as exc:
        print(f"crossdeploy: error: {exc}", file=sys.stderr)
        return 1
    write(report, options.out)
    console.print(table(report))
    for name, t in report.targets.items():
        console.print(f"{name}: {t.ratio:.2f}× (target {'≥' if t.kind == 'min' else '≤'} {t.bound}×): {'met' if t.met else 'NOT MET'}")
    console.print(f"report: {options.out}/gateway_floor.md, gateway_floor.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())

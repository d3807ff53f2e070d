"""`make soak`: the gateway under a long mixed load, overloaded and let go, with the figures to show it held.

Every ready variant in every protocol, in one mix. First the machine's capacity for that mix (closed loop, 16
clients); then cycles of: at capacity (open loop at half of it plus 8 closed-loop clients that take the rest), at
4x capacity (open loop at 4x, plus 32 clients that resend at once when refused), and back at capacity. Reported per
second: answers by kind, p50/p99 of the served ones, the gateway's RSS; per phase: goodput as a share of capacity,
p99, refusals with and without Retry-After, time to recover after the overload; over the soak: RSS growth, p99 drift.

    python -m crossdeploy.bench.soak --minutes 30          # what `make soak` runs
    python -m crossdeploy.bench.soak --minutes 2 --out DIR # the suite's form
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import psutil
import uvloop
from rich.console import Console

from crossdeploy.errors import CrossdeployError
from crossdeploy.repository import V2_TO_NUMPY

from . import servers
from .loadgen import Target, encode_request
from .provenance import git_revision
from .requests import PROTOCOLS, build
from .soak_load import OK, Traffic, summarize
from .soak_verdict import judge

CYCLE_S = 300.0  # one capacity -> overload -> back cycle lasts at most five minutes: a 30-minute soak has six
SHARES = {"capacity": 0.4, "overload": 0.2, "back": 0.4}


@dataclass
class Options:
    repository: Path = Path("model_repository")
    minutes: float = 30.0
    out: Path = Path("build/reports/soak")
    url: str | None = None
    factor: float = 4.0
    timeout_s: float = 10.0
    capacity: float | None = None  # req/s; measured when not given
    calibrate_s: float = 10.0
    connections: int = 1024
    server_args: list[str] = field(default_factory=list)


def get_json(url: str, body: bytes | None = None) -> object:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"} if body else {})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def request_mix(base: str, seed: int = 0) -> tuple[list[bytes], list[str]]:
    """One pre-encoded request per ready variant and protocol (batch 1, inputs drawn from each signature), in a
    seeded order so consecutive requests go to different variants."""
    rng = np.random.default_rng(seed)
    ready = [row["name"] for row in get_json(f"{base}/v2/repository/index", b'{"ready": true}')]
    requests, labels = [], []
    for name in sorted(set(ready)):
        metadata = get_json(f"{base}/v2/models/{name}")
        inputs = {i["name"]: rng.random([1 if d == -1 else d for d in i["shape"]]).astype(V2_TO_NUMPY[i["datatype"]])
                  for i in metadata["inputs"]}
        for protocol in PROTOCOLS:
            request = build(protocol, name, inputs)
            target = Target.parse(base + request.path)
            requests.append(encode_request(target, request.body, request.headers))
            labels.append(f"{name}/{protocol}")
    if not requests:
        raise CrossdeployError(f"{base} serves no ready variant")
    order = rng.permutation(len(requests))
    return [requests[i] for i in order], [labels[i] for i in order]


def plan(minutes: float, capacity: float, factor: float) -> list[tuple[str, float, float, int]]:
    """(phase, seconds, open-loop rate, closed-loop clients) for the whole soak."""
    total = minutes * 60
    cycles = max(1, round(total / CYCLE_S))
    cycle = total / cycles
    shapes = {"capacity": (0.5 * capacity, 8), "overload": (factor * capacity, 32), "back": (0.5 * capacity, 8)}
    return [(name, cycle * SHARES[name], *shapes[name]) for _ in range(cycles) for name in SHARES]


class Timeline:
    """Each finished second, with its phase and the gateway's RSS; each phase's served latencies, whole."""

    def __init__(self, server: psutil.Process | None, console: Console):
        self.server, self.console = server, console
        self.rows: list[dict] = []
        self.phases: list[dict] = []  # name, start second
        self.latencies: dict[int, list[np.ndarray]] = {}
        self.cpu = {"client": time.process_time(), "server": self._server_cpu()}

    def _server_cpu(self) -> float | None:
        try:
            times = self.server.cpu_times() if self.server else None
        except psutil.Error:
            return None
        return times.user + times.system if times else None

    def _cpu_since(self) -> dict[str, float | None]:
        """CPU seconds each side spent since the last window (a starved load generator shows here)."""
        now = {"client": time.process_time(), "server": self._server_cpu()}
        spent = {k: (now[k] - self.cpu[k]) if now[k] is not None and self.cpu[k] is not None else None for k in now}
        self.cpu = now
        return spent

    def on_phase(self, name: str, at: float) -> None:
        self.phases.append({"name": name, "start_s": at})
        self.console.print(f"[{time.strftime('%H:%M:%S')}] {name} from second {at:.0f}")

    def phase_at(self, second: int) -> int:
        index = 0
        for i, phase in enumerate(self.phases):
            if phase["start_s"] <= second:
                index = i
        return index

    def on_window(self, second: int, tally) -> None:
        row = {"second": second, "phase": self.phase_at(second), **summarize(tally), **{f"{k}_cpu_s": v for k, v in self._cpu_since().items()}}
        try:
            row["rss_mb"] = self.server.memory_info().rss / 2**20 if self.server else None
        except psutil.Error:
            row["rss_mb"] = None
        self.rows.append(row)
        self.latencies.setdefault(row["phase"], []).append(np.asarray(tally.latencies, dtype=np.float32))
        if second % 10 == 0:
            self.console.print(progress_line(row))


def progress_line(row: dict) -> str:
    kinds = ", ".join(f"{k} {v}" for k, v in sorted(row["kinds"].items()))
    line = f"  s{row['second']:>5}  {kinds}  p99 {row['p99_ms'] or 0:.0f} ms  client cpu {row['client_cpu_s']:.2f} s"
    if row["rss_mb"]:
        line += f"  gateway rss {row['rss_mb']:.0f} MB, cpu {row['server_cpu_s'] or 0:.2f} s"
    return line


def calibrate(traffic: Traffic, seconds: float, console: Console) -> float:
    """The mix's capacity: answers served per second by 16 closed-loop clients, after a warm-up."""
    timeline = Timeline(None, console)
    warm = 3.0
    uvloop.run(traffic.run([("warm-up", warm, 0.0, 16), ("calibrate", seconds, 0.0, 16)], timeline.on_window, timeline.on_phase))
    rows = [r for r in timeline.rows if r["phase"] == 1 and r["second"] < warm + seconds - 1]
    served = [r["ok"] for r in rows[1:]] or [r["ok"] for r in rows]
    if not served or not sum(served):
        raise CrossdeployError("the gateway served nothing during calibration")
    return float(np.median(served))


def soak(options: Options, console: Console) -> dict:
    server, base = None, options.url
    commit = git_revision()  # the code the gateway starts with, whatever is committed while it runs
    if base is None:
        server, base = start_gateway(options)
    try:
        requests, labels = request_mix(base)
        console.print(f"mix: {len(requests)} requests ({len(labels) // len(PROTOCOLS)} variants × {len(PROTOCOLS)} protocols)")
        target = Target.parse(base)
        capacity = options.capacity or calibrate(Traffic(target, requests, options.timeout_s, options.connections),
                                                 options.calibrate_s, console)
        console.print(f"capacity: {capacity:,.0f} answers/s")
        timeline = Timeline(psutil.Process(server.pid) if server else None, console)
        phases = plan(options.minutes, capacity, options.factor)
        traffic = Traffic(target, requests, options.timeout_s, options.connections)
        uvloop.run(traffic.run(phases, timeline.on_window, timeline.on_phase))
    finally:
        if server is not None:
            servers.stop([server])
    return judge(timeline, phases, capacity, options, labels, commit)


def start_gateway(options: Options):
    port = servers.free_port()
    options.out.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "crossdeploy.cli", "serve", "--port", str(port), "--repository",
               str(options.repository), *options.server_args]
    process = servers.start(command, f"http://127.0.0.1:{port}/v2/health/ready", options.out / "gateway.log")
    return process, f"http://127.0.0.1:{port}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="the gateway under a long mixed load, overloaded and let go")
    parser.add_argument("--repository", type=Path, default=Path("model_repository"))
    parser.add_argument("--minutes", type=float, default=30.0, help="length of the soak after calibration")
    parser.add_argument("--out", type=Path, default=Path("build/reports/soak"))
    parser.add_argument("--url", default=None, help="soak this running gateway instead of starting one (no RSS)")
    parser.add_argument("--factor", type=float, default=4.0, help="overload as a multiple of capacity")
    parser.add_argument("--capacity", type=float, default=None, help="answers/s to take as capacity (default: measured)")
    parser.add_argument("--timeout-s", type=float, default=10.0, help="a request unanswered this long is a timeout")
    parser.add_argument("--connections", type=int, default=1024,
                        help="the load generator's connections at most (open-loop requests beyond wait for one)")
    parser.add_argument("--server-arg", dest="server_args", action="append", default=[],
                        help="an argument for `crossdeploy serve` (repeatable), e.g. --server-arg=--max-in-flight=32")
    options = Options(**vars(parser.parse_args(argv)))
    if options.minutes <= 0:
        print("crossdeploy: error: --minutes must be positive", file=sys.stderr)
        return 2
    console = Console()
    try:
        report = soak(options, console)
    except CrossdeployError as exc:
        print(f"crossdeploy: error: {exc}", file=sys.stderr)
        return 1
    from .soak_report import write

    written = write(report, options.out)
    console.print(f"report: {', '.join(str(p) for p in written)}")
    for check in report["checks"]:
        console.print(f"{'met' if check['met'] else 'NOT MET'}: {check['name']} — {check['value']}")
    return 0 if all(c["met"] for c in report["checks"]) else 1


if __name__ == "__main__":
    sys.exit(main())

"""The gateway against the floor, with wrk: V2-JSON `infer` on `torch-onnx` at concurrency 1, 8 and 32 against
a minimal hand-written FastAPI+onnxruntime endpoint (bench/floor.py) serving the same ONNX file in the same run;
then the binary tensor extension against JSON at batch 64.

Both servers run as their own processes, started here; targets alternate within every repeat so drift hits
both alike; each figure is the median over the repeats. wrk's own CPU time (from wait4) and each server's are
reported, so a starved load generator would show. Results: build/reports/gateway/ (JSON + Markdown).

    python -m crossdeploy.bench.gateway_floor [--seconds 8] [--repeats 3]      (or: make bench-gateway)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import crossdeploy  # noqa: F401

import numpy as np
import psutil
from rich.console import Console
from rich.table import Table

from crossdeploy.errors import CrossdeployError
from crossdeploy.repository import ModelRepository

MODEL = "torch-onnx"
NEIGHBOUR = "keras-eager"  # the slowest variant (tf_keras eager call, ~2-30 ms): must not stall torch-onnx
TARGETS = {"throughput_c8_min": 0.9, "p99_c32_max": 1.5, "binary_speedup_b64_min": 2.0}
LUA = """
wrk.method = "POST"
local f = assert(io.open("%(body)s", "rb")); wrk.body = f:read("*a"); f:close()
%(headers)s
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('{"requests":%%d,"duration_us":%%d,"errors":%%d,"p50_us":%%d,"p90_us":%%d,"p99_us":%%d,"mean_us":%%f}\\n',
    summary.requests, summary.duration, e.status + e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.mean))
end
"""


def bodies(folder: Path, samples: np.ndarray) -> dict[str, tuple[Path, dict]]:
    """(file, headers) per request kind: V2 JSON at batch 1 and 64, V2 binary at batch 64."""
    out = {}
    for label, batch in (("json-b1", 1), ("json-b64", 64)):
        x = samples[:batch]
        body = {"inputs": [{"name": "image", "datatype": "FP32", "shape": list(x.shape), "data": x.ravel().tolist()}]}
        out[label] = (folder / f"{label}.json", {"Content-Type": "application/json"})
        out[label][0].write_text(json.dumps(body))
    x = samples[:64]
    header = json.dumps({"inputs": [{"name": "image", "datatype": "FP32", "shape": list(x.shape), "parameters": {"binary_data_size": x.nbytes}}],
                         "outputs": [{"name": "logits", "parameters": {"binary_data": True}}]}).encode()
    out["binary-b64"] = (folder / "binary-b64.bin", {"Content-Type": "application/octet-stream",
                                                      "Inference-Header-Content-Length": str(len(header))})
    out["binary-b64"][0].write_bytes(header + x.astype(np.float32).tobytes())
    return out


def script(folder: Path, label: str, body: Path, headers: dict) -> Path:
    lines = "\n".join(f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items())
    path = folder / f"{label}.lua"
    path.write_text(LUA % {"body": body, "headers": lines})
    return path


def wrk(url: str, lua: Path, connections: int, seconds: float) -> dict:
    """One wrk run (one thread: the other core is the server's). Adds wrk's own CPU seconds from wait4."""
    command = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "10s", "-s", str(lua), url]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = process.communicate()
    if process.returncode:
        raise CrossdeployError(f"wrk failed: {err.strip() or out.strip()}")
    result = json.loads(out.strip().splitlines()[-1])
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    return result


def start(command: list[str], ready_url: str, log: Path) -> subprocess.Popen:
    process = subprocess.Popen(command, stdout=open(log, "w"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise CrossdeployError(f"{command[2]} exited with {process.returncode}; see {log}")
        try:
            with urllib.request.urlopen(ready_url, timeout=2) as response:
                if response.status == 200:
                    return process
        except OSError:
            time.sleep(0.5)
    process.kill()
    raise CrossdeployError(f"{' '.join(command)} did not become ready in 600 s; see {log}")


def tritonclient_end_to_end(address: str, x: np.ndarray, count: int) -> dict:
    """What a user of Triton's own client sees: request encoding, transport, server, response decoding."""
    import tritonclient.http as triton

    client = triton.InferenceServerClient(address, network_timeout=60)
    out = {}
    for label, binary in (("json", False), ("binary", True)):
        tensor = triton.InferInput("image", list(x.shape), "FP32")
        wanted = [triton.InferRequestedOutput("logits", binary_data=binary)]
        times = []
        for i in range(count + 10):
            start = time.perf_counter()
            tensor.set_data_from_numpy(x, binary_data=binary)
            client.infer(MODEL, [tensor], outputs=wanted).as_numpy("logits")
            if i >= 10:  # the first ten warm up
                times.append(time.perf_counter() - start)
        out[label] = {"requests": count, "p50_ms": float(np.percentile(times, 50) * 1e3), "p99_ms": float(np.percentile(times, 99) * 1e3)}
    client.close()
    return out


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run(repository: Path, seconds: float, repeats: int, concurrency: tuple[int, ...], out: Path, console: Console,
        inline_ms: float | None = None) -> dict:
    if not shutil.which("wrk"):
        raise CrossdeployError("wrk is not installed (apt-get install wrk)")
    repo = ModelRepository(repository)
    config, record = repo.get(MODEL)
    model = repo.version_dir(MODEL, record.version) / "model.onnx"
    from crossdeploy.models.data import load_split

    samples = load_split(seed=0).x_test.astype(np.float32)
    out.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="gateway-floor-"))
    requests = bodies(scratch, samples)
    scripts = {label: script(scratch, label, body, headers) for label, (body, headers) in requests.items()}
    ports = {"gateway": free_port(), "floor": free_port()}
    urls = {name: f"http://127.0.0.1:{port}/v2/models/{MODEL}/infer" for name, port in ports.items()}
    servers = {}
    try:
        with console.status("starting the gateway (all variants) and the floor…"):
            extra = [] if inline_ms is None else ["--inline-ms", str(inline_ms)]
            servers["gateway"] = start([sys.executable, "-m", "crossdeploy.cli", "serve", "--port", str(ports["gateway"]),
                                        "--repository", str(repository), *extra], f"http://127.0.0.1:{ports['gateway']}/v2/health/ready",
                                       out / "gateway.log")
            servers["floor"] = start([sys.executable, "-m", "crossdeploy.bench.floor", "--model", str(model), "--port", str(ports["floor"])],
                                     f"http://127.0.0.1:{ports['floor']}/docs", out / "floor.log")
        procs = {name: psutil.Process(p.pid) for name, p in servers.items()}
        for name in servers:  # warm-up, not measured
            wrk(urls[name], scripts["json-b1"], 8, 2)
        runs: list[dict] = []
        plan = [(c, name, "json-b1") for c in concurrency for name in ("floor", "gateway")]
        plan += [(1, "gateway", "json-b64"), (1, "gateway", "binary-b64"), (1, "gateway", "json-b1+slow-neighbour")]
        neighbour = urls["gateway"].replace(MODEL, NEIGHBOUR)
        total = repeats * len(plan)
        for repeat in range(repeats):
            for step, (connections, name, label) in enumerate(plan):
                console.log(f"[{repeat * len(plan) + step + 1}/{total}] {name} {label} C={connections}")
                cpu_before = procs[name].cpu_times()
                if label.endswith("+slow-neighbour"):  # keras-eager kept busy at C=4 while torch-onnx is timed
                    background = subprocess.Popen(["wrk", "-t1", "-c4", f"-d{max(1, round(seconds))}s", "-s", str(scripts["json-b1"]), neighbour],
                                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                    result = wrk(urls[name], scripts["json-b1"], connections, seconds)
                    background.wait()
                else:
                    result = wrk(urls[name], scripts[label], connections, seconds)
                cpu_after = procs[name].cpu_times()
                result["server_cpu_s"] = (cpu_after.user + cpu_after.system) - (cpu_before.user + cpu_before.system)
                runs.append({"target": name, "request": label, "concurrency": connections, "repeat": repeat, **result})
        wrk_cpu = os.times()  # children's user+system: every wrk run
        with console.status("tritonclient end to end, batch 64, binary vs JSON…"):
            e2e = tritonclient_end_to_end(f"127.0.0.1:{ports['gateway']}", samples[:64], max(50, int(seconds * 40)))
    finally:
        for process in servers.values():
            process.terminate()
        for process in servers.values():
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
        shutil.rmtree(scratch, ignore_errors=True)
    report = summarize(runs, seconds, repeats)
    report["wrk_cpu_seconds_total"] = wrk_cpu.children_user + wrk_cpu.children_system
    report["machine"] = {"cpus": os.cpu_count(), "model": MODEL, "version": record.version}
    report["inline_ms"] = inline_ms
    report["tritonclient_b64"] = e2e
    report["checks"]["binary_speedup_b64_tritonclient"] = e2e["json"]["p50_ms"] / e2e["binary"]["p50_ms"]
    (out / "gateway_floor.json").write_text(json.dumps(report, indent=2))
    (out / "gateway_floor.md").write_text(markdown(report))
    console.print(table(report))
    return report


def summarize(runs: list[dict], seconds: float, repeats: int) -> dict:
    groups: dict[tuple, list[dict]] = {}
    for r in runs:
        groups.setdefault((r["target"], r["request"], r["concurrency"]), []).append(r)
    rows = []
    for (target, request, connections), items in groups.items():
        rows.append({
            "target": target, "request": request, "concurrency": connections,
            "rps": statistics.median(i["rps"] for i in items), "rps_all": [round(i["rps"], 1) for i in items],
            "p50_ms": statistics.median(i["p50_us"] for i in items) / 1e3, "p90_ms": statistics.median(i["p90_us"] for i in items) / 1e3,
            "p99_ms": statistics.median(i["p99_us"] for i in items) / 1e3, "errors": sum(i["errors"] for i in items),
            "server_cpu_share": statistics.median(i["server_cpu_s"] / seconds for i in items),
        })
    find = {(r["target"], r["request"], r["concurrency"]): r for r in rows}
    checks = {}
    if ("gateway", "json-b1", 8) in find:
        checks["throughput_c8"] = find[("gateway", "json-b1", 8)]["rps"] / find[("floor", "json-b1", 8)]["rps"]
    if ("gateway", "json-b1", 32) in find:
        checks["p99_c32"] = find[("gateway", "json-b1", 32)]["p99_ms"] / find[("floor", "json-b1", 32)]["p99_ms"]
    if ("gateway", "binary-b64", 1) in find:
        checks["binary_speedup_b64"] = find[("gateway", "binary-b64", 1)]["rps"] / find[("gateway", "json-b64", 1)]["rps"]
    if ("gateway", "json-b1+slow-neighbour", 1) in find and ("gateway", "json-b1", 1) in find:
        checks["p99_c1_with_slow_neighbour"] = find[("gateway", "json-b1+slow-neighbour", 1)]["p99_ms"] / find[("gateway", "json-b1", 1)]["p99_ms"]
    return {"seconds": seconds, "repeats": repeats, "rows": rows, "checks": checks, "targets": TARGETS, "runs": runs}


def markdown(report: dict) -> str:
    lines = ["| target | request | C | req/s (median) | p50 ms | p90 ms | p99 ms | errors | server CPU (cores) |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in report["rows"]:
        lines.append(f"| {r['target']} | {r['request']} | {r['concurrency']} | {r['rps']:,.0f} | {r['p50_ms']:.2f} | "
                     f"{r['p90_ms']:.2f} | {r['p99_ms']:.2f} | {r['errors']} | {r['server_cpu_share']:.2f} |")
    c = report["checks"]
    lines += ["", f"gateway/floor throughput at C=8: **{c.get('throughput_c8', float('nan')):.2f}×** (target ≥ 0.9×); "
              f"gateway/floor p99 at C=32: **{c.get('p99_c32', float('nan')):.2f}×** (target ≤ 1.5×); "
              f"binary/JSON throughput at batch 64: **{c.get('binary_speedup_b64', float('nan')):.2f}×** (target ≥ 2×); "
              f"With tritonclient end to end (client encoding included) at batch 64, binary is "
              f"**{c.get('binary_speedup_b64_tritonclient', float('nan')):.2f}×** faster than JSON at the median; "
              f"torch-onnx p99 at C=1 while keras-eager is kept busy, against alone: **{c.get('p99_c1_with_slow_neighbour', float('nan')):.2f}×**."]
    return "\n".join(lines) + "\n"


def table(report: dict) -> Table:
    t = Table(title="gateway vs floor (wrk, medians over repeats)", title_justify="left")
    for column in ("target", "request", "C", "req/s", "p50 ms", "p90 ms", "p99 ms", "errors", "server CPU"):
        t.add_column(column, justify="left" if column in ("target", "request") else "right")
    for r in report["rows"]:
        t.add_row(r["target"], r["request"], str(r["concurrency"]), f"{r['rps']:,.0f}", f"{r['p50_ms']:.2f}", f"{r['p90_ms']:.2f}",
                  f"{r['p99_ms']:.2f}", str(r["errors"]), f"{r['server_cpu_share']:.2f}")
    return t


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="gateway vs a minimal FastAPI+onnxruntime endpoint, with wrk")
    parser.add_argument("--repository", type=Path, default=Path("model_repository"))
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--out", type=Path, default=Path("build/reports/gateway"))
    parser.add_argument("--inline-ms", type=float, default=None, help="the gateway's inline budget (default: its own)")
    args = parser.parse_args(argv)
    try:
        run(args.repository, args.seconds, args.repeats, tuple(int(c) for c in args.concurrency.split(",")), args.out, Console(),
            args.inline_ms)
    except CrossdeployError as exc:
        print(f"crossdeploy: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The gateway alone, after its comparison with the floor (bench/gateway_floor.py), with wrk at C=1:

- the V2 binary tensor extension against V2 JSON at batch 64 (target: binary ≥ 2× JSON's throughput), and the
  same end to end with tritonclient, whose encoding and decoding of the tensors is where JSON costs most;
- torch-onnx at batch 1 alone, then while keras-eager (the slowest variant, Python-heavy eager calls) is kept
  busy at C=4 beside it: a slow neighbour must not queue a fast model's requests.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import time
from pathlib import Path

import numpy as np
from rich.console import Console

from .requests import build
from .wrk import run_wrk, script

MODEL = "torch-onnx"
NEIGHBOUR = "keras-eager"
TARGETS = {"binary_speedup_b64_min": 2.0}
STEPS = ("json-b64", "binary-b64", "json-b1", "json-b1+slow-neighbour")


def tritonclient_end_to_end(address: str, input_name: str, x: np.ndarray, count: int) -> dict:
    """What a user of Triton's own client sees: request encoding, transport, server, response decoding."""
    import tritonclient.http as triton

    client = triton.InferenceServerClient(address, network_timeout=60)
    out = {}
    for label, binary in (("json", False), ("binary", True)):
        tensor = triton.InferInput(input_name, list(x.shape), "FP32")
        times = []
        for i in range(count + 10):
            began = time.perf_counter()
            tensor.set_data_from_numpy(x, binary_data=binary)
            client.infer(MODEL, [tensor], outputs=[triton.InferRequestedOutput("logits", binary_data=binary)]).as_numpy("logits")
            if i >= 10:  # the first ten warm up
                times.append(time.perf_counter() - began)
        out[label] = {"requests": count, "p50_ms": float(np.percentile(times, 50) * 1e3), "p99_ms": float(np.percentile(times, 99) * 1e3)}
    client.close()
    return out


def one_step(base: str, step: str, scripts: dict[str, Path], seconds: float) -> dict:
    url = f"{base}/v2/models/{MODEL}/infer"
    if not step.endswith("+slow-neighbour"):
        return run_wrk(url, scripts[step], 1, seconds)
    neighbour = subprocess.Popen(["wrk", "-t1", "-c4", f"-d{max(1, round(seconds))}s", "-s", str(scripts["neighbour"]),
                                  f"{base}/v2/models/{NEIGHBOUR}/infer"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        result = run_wrk(url, scripts["json-b1"], 1, seconds)
    finally:
        said = neighbour.communicate()[0].strip().splitlines()
    busy = json.loads(said[-1]) if said else {"requests": 0, "errors": 0}  # proof that the neighbour was kept busy
    return result | {"neighbour_requests": busy["requests"], "neighbour_errors": busy["errors"]}


def measure_extras(base: str, input_name: str, samples: np.ndarray, scratch: Path, seconds: float, repeats: int,
                   console: Console) -> dict:
    requests = {"json-b64": build("v2-json", MODEL, {input_name: samples[:64]}),
                "binary-b64": build("v2-binary", MODEL, {input_name: samples[:64]}),
                "json-b1": build("v2-json", MODEL, {input_name: samples[:1]}),
                "neighbour": build("v2-json", NEIGHBOUR, {input_name: samples[:1]})}
    scripts = {label: script(scratch, f"extra-{label}", request) for label, request in requests.items()}
    results: dict[str, list[dict]] = {step: [] for step in STEPS}
    for repeat in range(repeats):
        for step in STEPS:
            console.log(f"[{repeat + 1}/{repeats}] gateway {step} C=1")
            results[step].append(one_step(base, step, scripts, seconds))
    rows = {step: {"rps": statistics.median(r["rps"] for r in found), "p50_ms": statistics.median(r["p50_us"] for r in found) / 1e3,
                   "p99_ms": statistics.median(r["p99_us"] for r in found) / 1e3, "errors": sum(r["errors"] for r in found)}
            for step, found in results.items()}
    rows["json-b1+slow-neighbour"] |= {key: sum(r[key] for r in results["json-b1+slow-neighbour"])
                                       for key in ("neighbour_requests", "neighbour_errors")}
    with console.status("tritonclient end to end, batch 64, binary vs JSON…"):
        e2e = tritonclient_end_to_end(base.removeprefix("http://"), input_name, samples[:64], max(50, int(seconds * 40)))
    checks = {"binary_speedup_b64": rows["binary-b64"]["rps"] / rows["json-b64"]["rps"],
              "binary_speedup_b64_tritonclient": e2e["json"]["p50_ms"] / e2e["binary"]["p50_ms"],
              "p99_c1_with_slow_neighbour": rows["json-b1+slow-neighbour"]["p99_ms"] / rows["json-b1"]["p99_ms"]}
    return {"rows": rows, "checks": checks, "targets": TARGETS, "tritonclient_b64": e2e}


def extras_markdown(extras: dict) -> list[str]:
    lines = ["The gateway alone (wrk, C=1, medians):", "", "| request | req/s | p50 ms | p99 ms | errors |", "|---|---:|---:|---:|---:|"]
    for step, row in extras["rows"].items():
        lines.append(f"| {step} | {row['rps']:,.0f} | {row['p50_ms']:.2f} | {row['p99_ms']:.2f} | {row['errors']} |")
    c, e2e = extras["checks"], extras["tritonclient_b64"]
    return lines + ["", f"- binary/JSON throughput at batch 64: **{c['binary_speedup_b64']:.2f}×** (target ≥ "
                    f"{extras['targets']['binary_speedup_b64_min']}×); end to end with tritonclient: "
                    f"**{c['binary_speedup_b64_tritonclient']:.2f}×** (p50 {e2e['binary']['p50_ms']:.2f} ms vs {e2e['json']['p50_ms']:.2f} ms)",
                    f"- p99 at C=1 with {NEIGHBOUR} busy beside it: **{c['p99_c1_with_slow_neighbour']:.2f}×** its p99 alone "
                    f"({NEIGHBOUR} answered {extras['rows']['json-b1+slow-neighbour']['neighbour_requests']:,} requests meanwhile)"]

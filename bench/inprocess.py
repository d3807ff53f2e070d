"""In-process latency of every variant — the floor: through its runtime adapter (validation, batch splitting,
naming: what the gateway calls) and bare beside it (the adapter's framework call `_run` on pre-validated
arrays), per batch size, for one intra-op thread count. TensorFlow fixes its thread pools when it starts, so
`bench/run.py` runs this module once per thread count, each in a fresh process, and reads its JSON.

Cold start is measured here too (`--coldstart VARIANT`), one fresh process per variant: load time (framework
import included, as a server starting up sees it), first inference, RSS added.

    python -m crossdeploy.bench.inprocess --repository R --threads 1 --out part.json [--variant V[@RUNTIME]]... [--quick]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import crossdeploy  # noqa: F401  (environment first)

import numpy as np

from crossdeploy.repository import ModelRepository

from .stats import Window, measure_stable, merge

BATCHES = (1, 8, 64)
LAYERS = ("adapter", "bare")
# "torch-onnx@openvino": the variant's own artifact run by another engine (crossdeploy.runtimes.ALTERNATIVES).
ENGINE_MARK = "@"


def open_variant(repository: ModelRepository, key: str, threads: int):
    from crossdeploy.runtimes import open_runtime

    name, _, runtime = key.partition(ENGINE_MARK)
    return open_runtime(repository, name, threads=threads, runtime=runtime or None)


def inputs(batch: int) -> dict[str, np.ndarray]:
    from crossdeploy.models.data import load_split

    x = load_split(seed=0).x_test.astype(np.float32)
    return {"image": np.ascontiguousarray(np.resize(x, (batch, 8, 8)))}


def timed_window(call, rows: int, seconds: float) -> Window:
    latencies = []
    cpu0, start = time.process_time(), time.perf_counter()
    while True:
        began = time.perf_counter()
        call()
        ended = time.perf_counter()
        latencies.append((ended - began) * 1e3)
        if ended - start >= seconds and len(latencies) >= 5:
            break
    return Window(np.asarray(latencies), time.perf_counter() - start, rows * len(latencies), cpu_s=time.process_time() - cpu0)


def measure(repository: Path, threads: int, variants: list[str], batches: tuple[int, ...], layers: tuple[str, ...],
            repeats: int, window_s: float, max_windows: int) -> list[dict]:
    repo = ModelRepository(repository)
    runtimes = {name: open_variant(repo, name, threads).load() for name in variants}
    feeds = {b: inputs(b) for b in batches}
    results: dict[tuple, dict] = {}
    plan = [(n, b, layer) for n in variants for b in batches for layer in layers]
    for name, b, layer in plan:  # warm-up: first calls allocate, compile, plan memory
        call = _call(runtimes[name], feeds[b], layer)
        for _ in range(10):
            call()
    total, step = repeats * len(plan), 0
    for repeat in range(repeats):  # repeats outermost: drift over time hits every variant alike
        for name, b, layer in plan:
            step += 1
            print(f"PROGRESS {step} {total} in-process t{threads} {name} {layer} b{b}", flush=True)
            call = _call(runtimes[name], feeds[b], layer)
            windows, stable = measure_stable(lambda: timed_window(call, b, window_s), max_windows=max_windows)
            entry = results.setdefault((name, layer, b), {"kind": "inprocess", "variant": name, "layer": layer, "batch": b,
                                                          "threads": threads, "runs": []})
            entry["runs"].append(merge(windows, stable, b).model_dump())
    for runtime in runtimes.values():
        runtime.unload()
    return list(results.values())


def _call(runtime, feed: dict[str, np.ndarray], layer: str):
    if layer == "adapter":
        return lambda: runtime.predict(feed)
    arrays = runtime._validate(feed)
    cap, rows = runtime.config.max_batch, len(next(iter(arrays.values())))
    if cap and rows > cap:  # a format with a fixed batch cap (ExecuTorch/XNNPACK): the bare call takes chunks
        chunks = [{k: v[i : i + cap] for k, v in arrays.items()} for i in range(0, rows, cap)]
        return lambda: [runtime._run(chunk) for chunk in chunks]
    return lambda: runtime._run(arrays)


def coldstart(repository: Path, name: str, threads: int) -> dict:
    import psutil

    from crossdeploy.runtimes import open_runtime

    process = psutil.Process()
    repo = ModelRepository(repository)
    feed = inputs(1)
    rss0 = process.memory_info().rss
    start = time.perf_counter()
    runtime = open_runtime(repo, name, threads=threads)  # imports the adapter, hence its framework
    runtime.load()
    load_s = time.perf_counter() - start
    start = time.perf_counter()
    runtime.predict(feed)
    first_ms = (time.perf_counter() - start) * 1e3
    rss = process.memory_info().rss
    size = sum(f.size for f in runtime.version.files)
    return {"variant": name, "format": runtime.config.format, "load_s": load_s, "first_inference_ms": first_ms,
            "artifact_bytes": size, "rss_added_mb": (rss - rss0) / 2**20}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repository", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--variant", action="append", default=None)
    parser.add_argument("--batches", default=",".join(map(str, BATCHES)))
    parser.add_argument("--layers", default=",".join(LAYERS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--window", type=float, default=0.25, help="seconds per measurement window")
    parser.add_argument("--max-windows", type=int, default=10)
    parser.add_argument("--coldstart", default=None, help="measure the cold start of this variant instead")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.coldstart:
        result = coldstart(args.repository, args.coldstart, args.threads)
    else:
        variants = args.variant or ModelRepository(args.repository).names()
        result = measure(args.repository, args.threads, variants, tuple(int(b) for b in args.batches.split(",")),
                         tuple(args.layers.split(",")), args.repeats, args.window, args.max_windows)
    args.out.write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

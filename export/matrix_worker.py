"""One `crossdeploy matrix` worker: a fresh interpreter that takes one model spec through the pathways it is
given — export/convert, load, run, parity, latency — and reports each step and each result as one JSON line
on the descriptor it was handed (the converters print freely to stdout and stderr; those go to the log).

The parent (export/matrix.py) watches the step events: a step that outlives its timeout, or a converter that
takes the interpreter down (a segfault, an abort), costs that pathway only; the parent starts a new worker for
the pathways left and tells it which ones already failed, so a pathway built on a failed one is not retried.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np

import crossdeploy  # noqa: F401  (environment first)
from crossdeploy.errors import first_lines
from crossdeploy.export.exporting import BUILT_ON_TORCH_EXPORT, CONVERTS

LATENCY_CALLS, LATENCY_SECONDS, WARMUP = 300, 3.0, 10


class Reporter:
    def __init__(self, fd: int):
        self.out = os.fdopen(fd, "w", buffering=1)

    def __call__(self, event: str, **fields) -> None:
        self.out.write(json.dumps({"event": event, **fields}, default=float) + "\n")
        self.out.flush()


def declared_batch(config, directory: Path) -> str | None:
    """What the artifact itself declares for the batch axis, where the format makes that cheap to read."""
    try:
        if config.format == "onnx":
            import onnx

            dim = onnx.load(str(directory / "model.onnx"), load_external_data=False).graph.input[0].type.tensor_type.shape.dim[0]
            return "dynamic" if dim.dim_param or not dim.HasField("dim_value") else f"fixed {dim.dim_value}"
        if config.format == "tflite":
            from ai_edge_litert.interpreter import Interpreter

            signature = Interpreter(model_path=str(directory / "model.tflite")).get_input_details()[0]["shape_signature"]
            return "dynamic" if int(signature[0]) == -1 else f"fixed {int(signature[0])}"
    except Exception:  # a probe only; the run below is what decides
        return None
    return None


def latency_p50(runtime, one: dict[str, np.ndarray]) -> float:
    for _ in range(WARMUP):
        runtime.predict(one)
    times = []
    deadline = time.perf_counter() + LATENCY_SECONDS
    while len(times) < LATENCY_CALLS and time.perf_counter() < deadline:
        start = time.perf_counter_ns()
        runtime.predict(one)
        times.append(time.perf_counter_ns() - start)
    return float(np.median(times)) / 1e6


def run(job: dict, report: Reporter) -> None:
    from .exporting import NEEDS, context_for
    from .modelspec import build_model, load_spec, run_source
    from .pathways import PATHWAYS
    from crossdeploy.repository import ModelRepository

    import torch

    torch.set_num_threads(job["threads"])
    report("step", pathway=None, step="prepare")
    loaded = load_spec(job["spec"], job["workdir"])
    spec = loaded.spec
    model = build_model(loaded)
    x = next(iter(loaded.x.values()))
    reference = dict(zip([s.name for s in spec.outputs], run_source(spec.framework, model, x)))
    first = spec.outputs[0].name
    classes = reference[first].ndim == 2 and reference[first].shape[1] > 1
    source_accuracy = None
    if loaded.y is not None and classes:
        source_accuracy = float((reference[first].argmax(-1) == loaded.y).mean())
    report("reference", accuracy=source_accuracy, samples=int(len(x)))
    repository = ModelRepository(job["repository"])
    wanted = set(job["pathways"])
    failed: dict[str, str] = dict(job.get("failed", {}))
    needed = wanted | {NEEDS[p] for p in wanted if p in NEEDS}
    scratch = Path(job["scratch"])
    scratch.mkdir(parents=True, exist_ok=True)
    ctx = context_for(loaded, scratch, model)
    for pathway in [p for p in PATHWAYS if p.name in needed and p.source == spec.framework]:
        name = pathway.name
        keep = name in wanted
        if name in failed:  # failed (or hung) in an earlier worker: never rebuilt, its dependents are told below
            continue
        upstream = NEEDS.get(name)
        if upstream in failed:
            failed[name] = f"needs {upstream}'s ONNX file, and {upstream} failed"
        elif name in BUILT_ON_TORCH_EXPORT and "torch-export" in failed:
            failed[name] = f"built on torch.export, which failed: {failed['torch-export'].splitlines()[0]}"
        if name in failed:
            if keep:
                report("result", pathway=name, status="export failed", step="export", message=failed[name])
            continue
        state = {"step": "export"}
        try:
            _pathway(job, report, pathway, keep, ctx, repository, loaded, reference, x, failed, state)
        except Exception as exc:  # anything the steps did not expect fails this pathway, at the step it was in
            if state["step"] == "export":
                failed.setdefault(name, first_lines(exc))
            if keep:
                status = {"export": "conversion failed" if name in CONVERTS else "export failed", "load": "load failed",
                          "parity": "parity failed"}.get(state["step"], "runtime failed")
                report("result", pathway=name, status=status, step=state["step"], message=first_lines(exc))
    report("done")


def _pathway(job, report, pathway, keep, ctx, repository, loaded, reference, x, failed, state) -> None:
    from crossdeploy.runtimes import open_runtime

    from .exporting import export_one
    from .parity import check_parity

    spec, name = loaded.spec, pathway.name
    report("step", pathway=name, step="export")
    outcome = export_one(repository, pathway, ctx, keep=keep, detail=True)
    if outcome.error:
        failed[name] = outcome.error
        if keep:
            status = "conversion failed" if name in CONVERTS else "export failed"
            report("result", pathway=name, status=status, step="export", message=outcome.error, seconds=outcome.seconds)
        return
    if not keep:
        return
    result = {"pathway": name, "variant": outcome.name, "version": outcome.version, "size_bytes": outcome.size,
              "export_seconds": outcome.seconds}
    config = repository.config(outcome.name)
    result.update(dynamic_batch=config.dynamic_batch, max_batch=config.max_batch, batch_note=config.batch_note,
                  notes=config.notes, precision=config.precision, chain=" → ".join(step.tool for step in config.toolchain),
                  declared_batch=declared_batch(config, repository.version_dir(outcome.name, outcome.version)))
    state["step"] = "load"
    report("step", pathway=name, step="load")
    try:
        runtime = open_runtime(repository, outcome.name, threads=job["threads"]).load()
    except Exception as exc:
        report("result", status="load failed", step="load", message=first_lines(exc), **result)
        return
    try:
        state["step"] = "run"
        report("step", pathway=name, step="run")
        single = {spec.inputs[0].name: x[:1]}
        try:
            got = runtime.predict({spec.inputs[0].name: x})
            runtime.predict(single)
        except Exception as exc:
            report("result", status="runtime failed", step="run", message=first_lines(exc), **result)
            return
        state["step"] = "parity"
        parity = check_parity(reference, got, config.tolerance, loaded.y, variant=outcome.name,
                              reference_name=f"{spec.framework} eager")
        repository.set_parity(outcome.name, outcome.version, parity)
        stats = parity.outputs[0] if parity.outputs else None
        result.update(max_abs=stats.max_abs if stats else None, max_rel=stats.max_rel if stats else None,
                      min_atol=stats.min_atol if stats else None, agreement=parity.agreement, accuracy=parity.accuracy,
                      reference_accuracy=parity.reference_accuracy, tolerance=config.tolerance.model_dump())
        if job.get("latency", True):
            state["step"] = "latency"
            report("step", pathway=name, step="latency")
            try:
                result["p50_ms"] = latency_p50(runtime, single)
            except Exception as exc:  # it ran once above; a later failure is still a runtime failure
                report("result", status="runtime failed", step="latency", message=first_lines(exc), **result)
                return
        if parity.passed:
            report("result", status="ok", step="parity", message="", **result)
        else:
            report("result", status="parity failed", step="parity", message="\n".join(parity.failures[:4]), **result)
    finally:
        runtime.unload()


def main() -> int:
    job = json.loads(sys.argv[1])
    fd = os.dup(1)
    os.dup2(2, 1)  # whatever the converters print goes to the log, never into the event stream
    report = Reporter(fd)
    try:
        run(job, report)
    except Exception as exc:  # the spec was checked by the parent; anything here is reported, not raised
        report("error", message=first_lines(exc))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""One `crossdeploy matrix` worker: a fresh interpreter that takes one model spec through the pathways it is
given — export/convert, load, run, parity, latency — and reports each step and each result as one JSON line
on the descriptor it was handed (the converters print freely to stdout and stderr; those go to the log).

The parent (export/matrix_supervisor.py) watches the step events: a step that outlives its timeout, or a converter that
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
from crossdeploy.export.exporting import BUILT_ON_TORCH_EXPORT, CONVERTS, NEEDS, context_for, export_one
from crossdeploy.export.matrix_remedy import run_pathway
from crossdeploy.export.modelspec import build_model, load_spec, run_source
from crossdeploy.export.pathways import PATHWAYS
from crossdeploy.repository import ModelRepository

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


class SpecWorker:
    """One spec in this interpreter: the source model and its reference outputs, built once for every pathway."""

    def __init__(self, job: dict, report: Reporter):
        self.job, self.report = job, report
        self.failed: dict[str, str] = dict(job.get("failed", {}))  # pathway -> why nothing can be built on it
        self.remedy_args: dict = {}  # export_one's options and remedy record while a remedy is tried
        self.step = "prepare"

    def prepare(self) -> None:
        import torch

        torch.set_num_threads(self.job["threads"])
        self.report("step", pathway=None, step="prepare")
        self.loaded = load_spec(self.job["spec"], self.job["workdir"])
        spec = self.loaded.spec
        model = build_model(self.loaded)
        self.x = next(iter(self.loaded.x.values()))
        self.reference = dict(zip([s.name for s in spec.outputs], run_source(spec.framework, model, self.x)))
        first = self.reference[spec.outputs[0].name]
        source_accuracy = None
        if self.loaded.y is not None and first.ndim == 2 and first.shape[1] > 1:
            source_accuracy = float((first.argmax(-1) == self.loaded.y).mean())
        self.report("reference", accuracy=source_accuracy, samples=int(len(self.x)))
        self.repository = ModelRepository(self.job["repository"])
        scratch = Path(self.job["scratch"])
        scratch.mkdir(parents=True, exist_ok=True)
        self.ctx = context_for(self.loaded, scratch, model)

    def run(self) -> None:
        wanted = set(self.job["pathways"])
        needed = wanted | {NEEDS[p] for p in wanted if p in NEEDS}
        for pathway in [p for p in PATHWAYS if p.name in needed and p.source == self.loaded.framework]:
            name, keep = pathway.name, pathway.name in wanted
            if name in self.failed:  # failed (or hung) in an earlier worker: never rebuilt
                continue
            blocked = self._blocked_by(name)
            if blocked:
                self.failed[name] = blocked
                if keep:
                    self.report("result", pathway=name, status="export failed", step="export", message=blocked)
                continue
            run_pathway(self, pathway, keep)  # and, if it fails, its known remedies (export/matrix_remedy.py)
            if keep and pathway.precision == "int8" and self._keep_float() is not None:
                self._int8_curve(name)
        self.report("done")

    def _blocked_by(self, name: str) -> str | None:
        """Why a pathway cannot be built: what it starts from failed."""
        upstream = NEEDS.get(name)
        if upstream in self.failed:
            return f"needs {upstream}'s ONNX file, and {upstream} failed"
        if name in BUILT_ON_TORCH_EXPORT and "torch-export" in self.failed:
            return f"built on torch.export, which failed: {self.failed['torch-export'].splitlines()[0]}"
        return None

    def _unexpected(self, name: str, keep: bool, exc: Exception) -> None:
        if self.step == "export":
            self.failed.setdefault(name, first_lines(exc))
        if keep:
            status = {"export": "conversion failed" if name in CONVERTS else "export failed", "load": "load failed",
                      "parity": "parity failed"}.get(self.step, "runtime failed")
            self.report("result", pathway=name, status=status, step=self.step, message=first_lines(exc))

    def _pathway(self, pathway, keep: bool) -> None:
        name = pathway.name
        self.report("step", pathway=name, step="export")
        outcome = export_one(self.repository, pathway, self.ctx, keep=keep, detail=True, **self.remedy_args)
        if outcome.error:
            self.failed[name] = outcome.error
            if keep:
                status = "conversion failed" if name in CONVERTS else "export failed"
                self.report("result", pathway=name, status=status, step="export", message=outcome.error,
                            seconds=outcome.seconds)
            return
        if not keep:
            return
        config = self.repository.config(outcome.name)
        result = {"pathway": name, "variant": outcome.name, "version": outcome.version, "size_bytes": outcome.size,
                  "export_seconds": outcome.seconds, "dynamic_batch": config.dynamic_batch,
                  "max_batch": config.max_batch, "batch_note": config.batch_note, "notes": config.notes,
                  "precision": config.precision, "chain": " → ".join(step.tool for step in config.toolchain),
                  "declared_batch": declared_batch(config, self.repository.version_dir(outcome.name, outcome.version))}
        self._serve(config, outcome.version, result)

    def _enter(self, step: str, pathway: str) -> None:
        self.step = step
        self.report("step", pathway=pathway, step=step)

    def _serve(self, config, version: int, result: dict) -> None:
        """Load, run, parity and latency of an exported variant; the first failing step is its result."""
        from crossdeploy.runtimes import open_runtime

        name, spec = result["pathway"], self.loaded.spec
        self._enter("load", name)
        try:
            runtime = open_runtime(self.repository, config.name, threads=self.job["threads"]).load()
        except Exception as exc:
            self.report("result", status="load failed", step="load", message=first_lines(exc), **result)
            return
        try:
            self._enter("run", name)
            single = {spec.inputs[0].name: self.x[:1]}
            try:
                got = runtime.predict({spec.inputs[0].name: self.x})
                runtime.predict(single)
            except Exception as exc:
                self.report("result", status="runtime failed", step="run", message=first_lines(exc), **result)
                return
            self.step = "parity"
            parity = self._parity(config, version, got, result)
            if self.job.get("latency", True):
                self._enter("latency", name)
                try:
                    result["p50_ms"] = latency_p50(runtime, single)
                except Exception as exc:  # it ran once above; a later failure is still a runtime failure
                    self.report("result", status="runtime failed", step="latency", message=first_lines(exc), **result)
                    return
            if parity.passed:
                self.report("result", status="ok", step="parity", message="", **result)
            else:
                self.report("result", status="parity failed", step="parity",
                            message="\n".join(parity.failures[:4] + self._diagnosis(config.name)), **result)
        finally:
            runtime.unload()

    def _diagnosis(self, name: str) -> list[str]:
        """Where the chain of a variant that failed parity first diverges (when diverge follows that chain)."""
        from .diverge import first_divergence

        try:  # still the parity step: a diagnosis that overruns the step's deadline is a parity failure
            found = first_divergence(self.repository, name, self._reports("diverge", name),
                                     inputs=next(iter(self.loaded.x.values())))
        except Exception as exc:  # the diagnosis is extra: its failure must not hide the parity verdict
            return [f"{name}: the layer-by-layer diagnosis failed: {first_lines(exc)}"]
        return [found] if found else []

    def _reports(self, kind: str, name: str) -> Path:
        """Where a row's extra reports go: beside the matrix report, which outlives the worker's scratch folder."""
        return Path(self.job.get("reports") or Path(self.job["repository"]).parent) / kind / name

    def _keep_float(self) -> int | None:
        asked = self.job.get("int8_keep_float")
        return asked if asked is not None else self.loaded.spec.int8_keep_float

    def _int8_curve(self, pathway: str) -> None:
        """The keep-float trade-off of an int8 pathway's variant, reported after its result as an extra: a curve
        that fails or runs past the step timeout is said on the row; the row's verdict stands."""
        from .matrix_int8 import keep_float_curve

        variant = self.loaded.spec.variant(pathway)
        if pathway in self.failed or variant not in self.repository.names():
            return  # nothing was exported to re-quantize: the row says why already
        self._enter("keep-float", pathway)
        x = next(iter(self.loaded.x.values()))
        try:
            curve = keep_float_curve(self.repository, variant, self._keep_float(), self._reports("int8", variant), x,
                                     self.loaded.y, self.loaded.calibration)
        except Exception as exc:
            curve = {"error": first_lines(exc)}
        self.report("int8_curve", pathway=pathway, curve=curve)

    def _parity(self, config, version: int, got: dict[str, np.ndarray], result: dict):
        from .parity import check_parity

        parity = check_parity(self.reference, got, config.tolerance, self.loaded.y, variant=config.name,
                              reference_name=f"{self.loaded.framework} eager")
        self.repository.set_parity(config.name, version, parity)
        stats = parity.outputs[0] if parity.outputs else None
        result.update(max_abs=stats.max_abs if stats else None, max_rel=stats.max_rel if stats else None,
                      min_atol=stats.min_atol if stats else None, agreement=parity.agreement, accuracy=parity.accuracy,
                      reference_accuracy=parity.reference_accuracy, tolerance=config.tolerance.model_dump())
        return parity


def main() -> int:
    job = json.loads(sys.argv[1])
    fd = os.dup(1)
    os.dup2(2, 1)  # whatever the converters print goes to the log, never into the event stream
    report = Reporter(fd)
    try:
        worker = SpecWorker(job, report)
        worker.prepare()
        worker.run()
    except Exception as exc:  # the spec was checked by the parent; anything here is reported, not raised
        report("error", message=first_lines(exc))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

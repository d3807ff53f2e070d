"""Exports the trained models along every pathway into the model repository.

Each export writes into a staging folder inside the repository and is moved into place whole, so an
interrupted or failed export never leaves a half-written variant. A failing pathway does not stop the
others; the failures are raised together at the end.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from crossdeploy.errors import CrossdeployError, ExportError
from crossdeploy.models.data import calibration_batch, load_split
from crossdeploy.models.train import KERAS_MODEL, TORCH_WEIGHTS, load_keras, load_torch

from .context import ExportContext
from .pathways import BY_NAME, PATHWAYS, SOURCE_ROOT, Pathway
from .repository import ModelRepository, VariantConfig
from .spec import DIGITS, ModelSpec

# Pathways that start from another pathway's ONNX file.
NEEDS = {"torch-onnx-int8": "torch-onnx", "torch-savedmodel": "torch-onnx", "torch-tflite": "torch-onnx",
         "keras-torchscript": "keras-onnx"}


@dataclass(frozen=True)
class ExportOutcome:
    name: str
    version: int | None
    added: bool
    size: int
    seconds: float
    error: str | None = None


def select(variants: list[str] | None) -> list[Pathway]:
    if not variants:
        return list(PATHWAYS)
    unknown = [v for v in variants if v not in BY_NAME]
    if unknown:
        raise CrossdeployError(f"unknown variant(s) {', '.join(unknown)}; known: {', '.join(BY_NAME)}")
    return [p for p in PATHWAYS if p.name in variants]


def _config(pathway: Pathway, spec: ModelSpec, exported) -> VariantConfig:
    return VariantConfig(
        name=pathway.name, model=spec.name, format=pathway.format, runtime=pathway.runtime_step(),
        source_framework=pathway.source, precision=pathway.precision,
        pathway=[SOURCE_ROOT[pathway.source], *exported.steps], support=pathway.support,
        inputs=list(spec.inputs), outputs=list(spec.outputs), dynamic_batch=exported.dynamic_batch,
        max_batch=exported.max_batch, batch_note=exported.batch_note,
        entry=spec.torch_entry if pathway.format == "torch-eager" else None, tolerance=pathway.tolerance,
        notes=exported.notes,
    )


def load_context(trained: Path, scratch: Path, spec: ModelSpec = DIGITS, seed: int = 0) -> ExportContext:
    for name in (TORCH_WEIGHTS, KERAS_MODEL):
        if not (trained / name).exists():
            raise CrossdeployError(f"{trained / name} does not exist: run `crossdeploy train` first")
    return ExportContext(
        spec=spec, torch_model=load_torch(trained / TORCH_WEIGHTS), keras_model=load_keras(trained / KERAS_MODEL),
        example=np.array(load_split(seed).x_train[:4]), calibration=calibration_batch(seed), scratch=scratch,
    )


def export_all(repository: ModelRepository, trained: Path, variants: list[str] | None = None,
               spec: ModelSpec = DIGITS, seed: int = 0) -> list[ExportOutcome]:
    wanted = select(variants)
    names = {p.name for p in wanted}
    needed = names | {NEEDS[n] for n in names if n in NEEDS}
    repository.root.mkdir(parents=True, exist_ok=True)
    outcomes: list[ExportOutcome] = []
    with tempfile.TemporaryDirectory(prefix="crossdeploy-export-") as scratch:
        ctx = load_context(trained, Path(scratch), spec, seed)
        with Progress(TextColumn("[bold]export {task.fields[variant]:<18}"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn()) as progress:
            task = progress.add_task("export", total=len(needed), variant="")
            for pathway in [p for p in PATHWAYS if p.name in needed]:
                progress.update(task, variant=pathway.name)
                outcomes.append(_export_one(repository, pathway, ctx, keep=pathway.name in names))
                progress.advance(task)
    return [o for o in outcomes if o.name in names]


def _export_one(repository: ModelRepository, pathway: Pathway, ctx: ExportContext, keep: bool) -> ExportOutcome:
    start = time.perf_counter()
    staged = repository.staging_dir(pathway.name)
    try:
        exported = pathway.exporter_function()(ctx, staged)
        if not keep:  # only built because a selected pathway converts its ONNX file
            shutil.rmtree(staged)
            return ExportOutcome(pathway.name, None, False, 0, time.perf_counter() - start)
        record, added = repository.add(_config(pathway, ctx.spec, exported), staged)
    except Exception as exc:  # any converter's failure is reported for this pathway only
        shutil.rmtree(staged, ignore_errors=True)
        message = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        return ExportOutcome(pathway.name, None, False, 0, time.perf_counter() - start, error=message)
    size = sum(f.size for f in record.files)
    return ExportOutcome(pathway.name, record.version, added, size, time.perf_counter() - start)


def raise_failures(outcomes: list[ExportOutcome]) -> None:
    failed = [o for o in outcomes if o.error]
    if failed:
        raise ExportError(", ".join(o.name for o in failed), "; ".join(f"{o.name}: {o.error}" for o in failed))

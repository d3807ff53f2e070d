"""Exports model specs along every pathway of their framework into the model repository.

Each export writes into a staging folder inside the repository and is moved into place whole, so an
interrupted or failed export never leaves a half-written variant. A failing pathway does not stop the
others; the failures are raised together at the end. The pipeline and `crossdeploy matrix` both come here:
a built-in model is a spec file like any user's (models/specs/).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from crossdeploy.errors import CrossdeployError, ExportError, first_line, first_lines
from crossdeploy.repository import ToolStep
from crossdeploy.versions import version_of

from .context import ExportContext, Exported
from .modelspec import LoadedSpec, build_model, load_spec
from .pathways import BY_NAME, PATHWAYS, Pathway
from crossdeploy.repository import ModelRepository, VariantConfig
from .spec import BUILTIN_SPECS, ExportContract
from crossdeploy.repository import FLOAT_TOLERANCE

# Pathways that start from another pathway's ONNX file.
NEEDS = {"torch-onnx-int8": "torch-onnx", "torch-savedmodel": "torch-onnx", "torch-tflite": "torch-onnx",
         "keras-torchscript": "keras-onnx"}
BUILT_ON_TORCH_EXPORT = {"torch-aoti", "torch-executorch"}
# Which tool a pathway's failure belongs to: the source framework's own exporter ("export failed") or a
# converter/compiler that takes that export further ("conversion failed").
CONVERTS = {"torch-aoti", "torch-onnx-int8", "torch-savedmodel", "torch-tflite", "torch-executorch",
            "keras-tflite", "keras-tflite-int8", "keras-onnx", "keras-torchscript"}
SOURCE_TOOL = {"pytorch": ("torch", "torch"), "keras": ("tf_keras", "tf-keras")}


@dataclass(frozen=True)
class ExportOutcome:
    name: str  # the variant name (<prefix><pathway>)
    version: int | None
    added: bool
    size: int
    seconds: float
    error: str | None = None
    pathway: str = ""


def builtin_specs(models: tuple[str, ...] = ("digits-cnn",), workdir: Path | None = None) -> list[LoadedSpec]:
    """The built-in spec files (models/specs/<model>-<framework>.toml), PyTorch first."""
    return [load_spec(BUILTIN_SPECS / f"{model}-{framework}.toml", workdir)
            for model in models for framework in ("pytorch", "keras")]


def pathways_for(framework: str) -> list[Pathway]:
    return [p for p in PATHWAYS if p.source == framework]


def pathway_names(loaded: LoadedSpec, only: list[str] | None = None) -> list[str]:
    """The pathways that start from the spec's framework, in the matrix's order; `only` keeps those it names."""
    return [p.name for p in pathways_for(loaded.framework) if not only or p.name in only]


def select(specs: list[LoadedSpec], variants: list[str] | None) -> list[set[str]]:
    """Per spec (in order), the names of the pathways to export; `variants` may name variants or pathways."""
    known = {loaded.spec.variant(p.name): p.name for loaded in specs for p in pathways_for(loaded.framework)}
    unknown = [v for v in variants or [] if v not in known and v not in BY_NAME]
    if unknown:
        raise CrossdeployError(f"unknown variant(s) {', '.join(unknown)}; known: {', '.join(known)}")
    return [{p.name for p in pathways_for(loaded.framework)
             if not variants or p.name in variants or loaded.spec.variant(p.name) in variants} for loaded in specs]


def contract(loaded: LoadedSpec) -> ExportContract:
    spec = loaded.spec
    return ExportContract(name=spec.name, inputs=tuple(s.signature() for s in spec.inputs),
                          outputs=tuple(s.signature() for s in spec.outputs), opset=spec.opset,
                          factory=spec.factory, tolerance=spec.tolerance, variant_prefix=spec.prefix)


def context_for(loaded: LoadedSpec, scratch: Path, model=None) -> ExportContext:
    x = next(iter(loaded.x.values()))
    return ExportContext(contract=contract(loaded), source=loaded.framework,
                         model=model if model is not None else build_model(loaded),
                         example=np.ascontiguousarray(x[:4] if len(x) >= 4 else x), calibration=loaded.calibration,
                         scratch=scratch)


def source_step(ctx: ExportContext) -> ToolStep:
    tool, package = SOURCE_TOOL[ctx.source]
    return ToolStep(tool=tool, version=version_of(package), detail=f"{type(ctx.model).__name__} ({ctx.contract.name})")


def variant_config(pathway: Pathway, ctx: ExportContext, exported: Exported, remedy=None) -> VariantConfig:
    """`remedy`: the AppliedRemedy the exporter's options came from (crossdeploy matrix), recorded in the config."""
    contract = ctx.contract
    tolerance = pathway.tolerance
    if pathway.precision == "fp32" and contract.tolerance is not None:
        tolerance = contract.tolerance
    # Model code for formats that hold weights only (torch-eager) or need registered classes (a .keras file).
    entry = contract.factory if pathway.format in ("torch-eager", "keras") else None
    return VariantConfig(
        name=contract.variant(pathway.name), model=contract.name, format=pathway.format,
        runtime=pathway.runtime_step(), source_framework=pathway.source, precision=pathway.precision,
        pathway=pathway.name, toolchain=[source_step(ctx), *exported.steps], support=pathway.support,
        inputs=list(contract.inputs), outputs=list(contract.outputs), dynamic_batch=exported.dynamic_batch,
        max_batch=exported.max_batch, batch_note=exported.batch_note, entry=entry, tolerance=tolerance,
        notes=exported.notes, remedy=remedy,
    )


def export_all(repository: ModelRepository, specs: list[LoadedSpec], variants: list[str] | None = None) -> list[ExportOutcome]:
    repository.root.mkdir(parents=True, exist_ok=True)
    outcomes: list[ExportOutcome] = []
    plans = []
    for loaded, names in zip(specs, select(specs, variants)):
        needed = names | {NEEDS[n] for n in names if n in NEEDS}
        plans.append((loaded, names, [p for p in PATHWAYS if p.name in needed]))
    with Progress(TextColumn("[bold]export {task.fields[variant]:<30}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn()) as progress:
        task = progress.add_task("export", total=sum(len(p[2]) for p in plans), variant="")
        for loaded, names, pathways in plans:
            with tempfile.TemporaryDirectory(prefix="crossdeploy-export-") as scratch:
                ctx = context_for(loaded, Path(scratch))
                for pathway in pathways:
                    progress.update(task, variant=loaded.spec.variant(pathway.name))
                    outcome = export_one(repository, pathway, ctx, keep=pathway.name in names)
                    if pathway.name in names:
                        outcomes.append(outcome)
                    progress.advance(task)
    return outcomes


def export_one(repository: ModelRepository, pathway: Pathway, ctx: ExportContext, keep: bool,
               detail: bool = False, options: dict | None = None, remedy=None) -> ExportOutcome:
    """`detail`: the error keeps the tool's first lines (the matrix report) instead of one line (the CLI).
    `options`: keyword options for the exporter (a remedy's, which `remedy`, an AppliedRemedy, records)."""
    start = time.perf_counter()
    name = ctx.contract.variant(pathway.name)
    staged = repository.staging_dir(name)
    try:
        exported = pathway.exporter_function()(ctx, staged, **(options or {}))
        if not keep:  # only built because a selected pathway converts its ONNX file
            shutil.rmtree(staged)
            return ExportOutcome(name, None, False, 0, time.perf_counter() - start, pathway=pathway.name)
        record, added = repository.add(variant_config(pathway, ctx, exported, remedy), staged)
    except Exception as exc:  # any converter's failure is reported for this pathway only
        shutil.rmtree(staged, ignore_errors=True)
        return ExportOutcome(name, None, False, 0, time.perf_counter() - start, error=(first_lines if detail else first_line)(exc), pathway=pathway.name)
    size = sum(f.size for f in record.files)
    return ExportOutcome(name, record.version, added, size, time.perf_counter() - start, pathway=pathway.name)


def raise_failures(outcomes: list[ExportOutcome]) -> None:
    failed = [o for o in outcomes if o.error]
    if failed:
        raise ExportError(", ".join(o.name for o in failed), "; ".join(f"{o.name}: {o.error}" for o in failed))


__all__ = ["FLOAT_TOLERANCE", "builtin_specs", "context_for", "export_all", "export_one", "raise_failures"]

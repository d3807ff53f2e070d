"""`crossdeploy matrix SPEC...`: every applicable pathway on every model spec, as a deployability report.

Each spec is checked here first (a spec that cannot be used is one line and exit code 2, before anything is
written). Then each spec's pathways run in worker processes under a supervisor (export/matrix_supervisor.py)
that never stops at a failure. With `register`, the passing variants are copied into the model repository
(export/matrix_register.py).
"""

from __future__ import annotations

import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from crossdeploy.errors import CrossdeployError
from crossdeploy.repository import ModelRepository

from .exporting import pathway_names
from .matrix_register import check_register, register
from .matrix_remedy import compare_sizes
from .matrix_results import MatrixRun, PathwayResult, SpecRun
from .matrix_supervisor import SpecSupervisor
from .modelspec import LoadedSpec, SpecError, build_model, load_spec
from .pathways import BY_NAME
from .remedies import known_names

DEFAULT_TIMEOUT = 600.0  # seconds per step; a cold AOTInductor compile of the digits models takes ~30 s


def load_specs(paths: list[Path], workdir: Path) -> list[LoadedSpec]:
    """Every spec loaded and its model built and checked on two samples, before any export: SpecError (exit 2)."""
    loaded = [load_spec(path, workdir) for path in paths]
    seen: dict[tuple[str, str], Path] = {}
    variants: dict[str, Path] = {}
    for spec in loaded:
        key = (spec.spec.name, spec.framework)
        if key in seen:
            raise SpecError(str(spec.path), f"name: '{spec.spec.name}' ({spec.framework}) is also {seen[key]}")
        seen[key] = spec.path
        for pathway in pathway_names(spec):
            name = spec.spec.variant(pathway)
            if name in variants:
                raise SpecError(str(spec.path), f"variant_prefix: variant '{name}' would also come from {variants[name]}")
            variants[name] = spec.path
    for spec in loaded:
        build_model(spec)
    return loaded


def _run_specs(specs: list[LoadedSpec], scratch: Path, out: Path, workdir: Path, pathways: list[str] | None,
               timeout: float, threads: int, latency: bool,
               int8_keep_float: int | None = None,
               remedies: list[str] | None = None) -> tuple[list[SpecRun], list[PathwayResult]]:
    spec_runs, results = [], []
    logs = out / "logs"
    with Progress(TextColumn("[bold]matrix {task.description:<52}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn()) as progress:
        task = progress.add_task("", total=sum(len(pathway_names(s, pathways)) for s in specs))
        for spec in specs:
            supervisor = SpecSupervisor(spec, scratch, workdir, pathways, timeout, threads, progress, task, latency,
                                        reports=out, int8_keep_float=int8_keep_float, remedies=remedies)
            record, spec_results = supervisor.run()
            logs.mkdir(exist_ok=True)  # the scratch folder goes at the end; the logs stay beside the reports
            record.log = str(shutil.copyfile(record.log, logs / Path(record.log).name))
            spec_runs.append(record)
            results += spec_results
    return spec_runs, results


def run_matrix(specs: list[LoadedSpec], out: Path, workdir: Path, pathways: list[str] | None = None,
               timeout: float = DEFAULT_TIMEOUT, threads: int = 2, target: ModelRepository | None = None,
               latency: bool = True, int8_keep_float: int | None = None,
               remedies: list[str] | None = None) -> MatrixRun:
    """`remedies`: the names of the known remedies (export/remedies.py) a failed pathway may be tried with
    (None: all of them; []: none)."""
    unknown = [p for p in pathways or [] if p not in BY_NAME]
    if unknown:
        raise CrossdeployError(f"unknown pathway(s) {', '.join(unknown)}; known: {', '.join(BY_NAME)}")
    unknown = [r for r in remedies or [] if r not in known_names()]
    if unknown:
        raise CrossdeployError(f"unknown remedy(ies) {', '.join(unknown)}; known: {', '.join(known_names())}")
    if target is not None:
        check_register(specs, pathways, target)
    out.mkdir(parents=True, exist_ok=True)
    created = datetime.now(timezone.utc).isoformat(timespec="seconds")
    with tempfile.TemporaryDirectory(prefix=".matrix-", dir=out) as scratch:
        spec_runs, results = _run_specs(specs, Path(scratch), out, workdir, pathways, timeout, threads, latency,
                                        int8_keep_float, remedies)
        compare_sizes(results)
        run = MatrixRun(spec_runs, results, created, timeout)
        run.not_run = [(s.spec.name, p) for s in specs for p in pathway_names(s)
                       if s.spec.is_required(p) and p not in pathway_names(s, pathways)]
        if target is not None:
            run.registered = register(results, ModelRepository(Path(scratch) / "repository"), target)
    return run

"""`crossdeploy matrix --register`: the passing variants copied into a model repository a gateway serves."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

from crossdeploy.errors import CrossdeployError
from crossdeploy.repository import ModelRepository

from .exporting import pathway_names
from .matrix_results import PathwayResult
from .modelspec import LoadedSpec


def check_register(specs: list[LoadedSpec], pathways: list[str] | None, target: ModelRepository) -> None:
    """Refuses, before anything runs, a variant name that already serves another model in `target`."""
    for spec in specs:
        for pathway in pathway_names(spec, pathways):
            name = spec.spec.variant(pathway)
            if (target.root / name / "config.json").is_file():
                existing = target.config(name).model
                if existing != spec.spec.name:
                    raise CrossdeployError(f"--register: '{name}' in {target.root} serves model '{existing}', not "
                                           f"'{spec.spec.name}'; give the spec another variant_prefix")


def register(results: list[PathwayResult], scratch: ModelRepository, target: ModelRepository) -> list[str]:
    """Copies every passing variant into `target`: staged, then moved into place by the repository."""
    registered = []
    for r in results:
        if not r.ok or r.variant is None:
            continue
        config = scratch.config(r.variant)
        record = config.version(r.version)
        staged = target.staging_dir(r.variant)
        shutil.rmtree(staged)
        shutil.copytree(scratch.version_dir(r.variant, r.version), staged)
        added, _ = target.add(config.model_copy(update={"versions": []}), staged)
        if record.parity is not None:
            target.set_parity(r.variant, added.version, record.parity)
        registered.append(r.variant)
    return registered


def import_warnings(specs: list[LoadedSpec], registered: list[str], target: ModelRepository) -> list[str]:
    """Registered eager variants name their model code; a module found only beside its spec file is not
    importable by a gateway started elsewhere."""
    warnings = []
    for name in registered:
        config = target.config(name)
        if not config.entry:
            continue
        module = config.entry.partition(":")[0]
        found = importlib.util.find_spec(module)
        folder = next((s.path.parent for s in specs if s.spec.name == config.model), None)
        if found and found.origin and folder and Path(found.origin).resolve().is_relative_to(folder.resolve()) \
                and folder.resolve() != Path.cwd().resolve():
            warnings.append(f"{name}: the gateway imports '{module}' (from {folder}); start it with PYTHONPATH={folder}")
    return warnings

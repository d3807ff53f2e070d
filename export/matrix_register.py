"""`crossdeploy matrix --register`: the passing variants copied into a model repository a gateway serves.

A gateway imports model code only from the crossdeploy package or from the variant's own version folder (see
crossdeploy.repository.integrity). So an eager variant whose factory lives elsewhere carries its factory module:
the module's file is copied into the version folder (its sha256 recorded with the artifact's) and the entry
renamed to it. The module must therefore stand alone: one file, no relative imports.
"""

from __future__ import annotations

import ast
import importlib.util
import shutil
import sys
from pathlib import Path

from crossdeploy.errors import CrossdeployError
from crossdeploy.repository import ModelRepository, VariantConfig, carried_module, packaged

from .exporting import pathway_names
from .matrix_results import PathwayResult
from .modelspec import LoadedSpec
from .pathways import BY_NAME

EAGER = ("torch-eager", "keras")  # the formats whose variants name model code (VariantConfig.entry)


def module_file(module: str) -> Path | None:
    """The source file of an importable module (None for a package, a namespace or a compiled module)."""
    loaded = sys.modules.get(module)
    spec = loaded.__spec__ if loaded is not None and loaded.__spec__ else importlib.util.find_spec(module)
    origin = spec.origin if spec else None
    if not origin or not origin.endswith(".py") or Path(origin).name == "__init__.py":
        return None
    return Path(origin)


def uncarriable(factory: str) -> str | None:
    """Why the factory's module cannot travel with a registered variant (None when it can, or need not)."""
    if packaged(factory):
        return None
    module = factory.partition(":")[0]
    path = module_file(module)
    if path is None:
        return f"its module '{module}' is not a single .py file"
    tree = ast.parse(path.read_bytes(), str(path))
    if any(isinstance(node, ast.ImportFrom) and node.level > 0 for node in ast.walk(tree)):
        return f"its module '{module}' ({path}) imports relatively"
    return None


def check_register(specs: list[LoadedSpec], pathways: list[str] | None, target: ModelRepository) -> None:
    """Refuses, before anything runs, a variant name that already serves another model in `target`, and an eager
    variant whose factory module cannot be carried into its version folder."""
    for spec in specs:
        for pathway in pathway_names(spec, pathways):
            name = spec.spec.variant(pathway)
            if (target.root / name / "config.json").is_file():
                existing = target.config(name).model
                if existing != spec.spec.name:
                    raise CrossdeployError(f"--register: '{name}' in {target.root} serves model '{existing}', not "
                                           f"'{spec.spec.name}'; give the spec another variant_prefix")
            reason = uncarriable(spec.spec.factory) if BY_NAME[pathway].format in EAGER else None
            if reason:
                raise CrossdeployError(f"--register: '{name}' carries its factory {spec.spec.factory} into the "
                                       f"repository, but {reason}; make it a self-contained module")


def carry_code(config: VariantConfig, folder: Path) -> VariantConfig:
    """Copies the entry's module into the staged version folder and names it in the entry."""
    if not config.entry or packaged(config.entry):
        return config
    module, _, function = config.entry.partition(":")
    source, leaf = module_file(module), module.rpartition(".")[2]
    if source is None:  # check_register refused this before the matrix ran; a module gone since is still refused
        raise CrossdeployError(f"--register: {config.name}: the module '{module}' of its entry is not a .py file")
    shutil.copyfile(source, folder / f"{leaf}.py")
    return config.model_copy(update={"entry": f"{leaf}:{function}"})


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
        if carried_module(config, record) is None:
            config = carry_code(config, staged)
        added, _ = target.add(config.model_copy(update={"versions": []}), staged)
        if record.parity is not None:
            target.set_parity(r.variant, added.version, record.parity)
        registered.append(r.variant)
    return registered


def import_warnings(specs: list[LoadedSpec], registered: list[str], target: ModelRepository) -> list[str]:
    """A carried factory module is loaded from its version folder, but what it imports comes from the gateway's
    sys.path: a module it imports that is found only beside its spec file is missing in a gateway started
    elsewhere."""
    warnings = []
    for name in registered:
        config = target.config(name)
        if not config.entry or packaged(config.entry):
            continue
        folder = next((s.path.parent.resolve() for s in specs if s.spec.name == config.model), None)
        code = target.version_dir(name, config.latest().version) / f"{config.entry.partition(':')[0]}.py"
        if folder is None or folder == Path.cwd().resolve() or not code.is_file():
            continue
        for module in sorted(_top_level_imports(code)):
            found = importlib.util.find_spec(module) if module not in sys.modules else sys.modules[module].__spec__
            if found and found.origin and Path(found.origin).resolve().is_relative_to(folder):
                warnings.append(f"{name}: its model code imports '{module}' (from {folder}); start the gateway "
                                f"with PYTHONPATH={folder}")
    return warnings


def _top_level_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_bytes(), str(path))
    names = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    names |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module and not node.level}
    return {name.partition(".")[0] for name in names}

"""The house's shape, checked: data flows models -> export -> repository -> serving -> bench in the import graph,
and each shared fact (dtype table, default tolerance, eager reference, format vocabulary) exists once."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
# package folder -> the layer it belongs to (crossdeploy/ itself holds the CLI and pipeline, which may import all)
LAYERS = {"crossdeploy/repository": "repository", "crossdeploy/runtimes": "runtimes", "models": "models",
          "export": "export", "serving": "serving", "bench": "bench", "crossdeploy/deploy": "deploy"}
# what each layer may import (besides crossdeploy.errors / settings / versions, which import nothing of ours)
ALLOWED = {
    "repository": set(),
    "runtimes": {"repository"},
    "models": set(),
    "export": {"repository", "runtimes", "models"},
    "serving": {"repository", "runtimes", "models"},
    "bench": {"repository", "runtimes", "serving", "models"},
    "deploy": {"repository"},
}
LEAVES = ("crossdeploy.errors", "crossdeploy.settings", "crossdeploy.versions", "crossdeploy")


def package_dirs() -> dict[str, str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return config["tool"]["setuptools"]["package-dir"]


def layer_of_module(module: str, dirs: dict[str, str]) -> str | None:
    best = max((name for name in dirs if module == name or module.startswith(name + ".")), key=len, default=None)
    folder = (dirs[best] + module[len(best):].replace(".", "/")) if best else module.replace(".", "/")
    return next((layer for prefix, layer in LAYERS.items() if folder == prefix or folder.startswith(prefix + "/")), None)


def imports(path: Path, package: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                found.append(".".join(base + ([node.module] if node.module else [])))
            elif node.module:
                found.append(node.module)
    return [m for m in found if m.startswith("crossdeploy")]


def edges() -> dict[str, dict[str, str]]:
    dirs = package_dirs()
    folder_to_package = {folder: name for name, folder in dirs.items()}
    graph: dict[str, dict[str, str]] = {}
    for prefix, layer in LAYERS.items():
        for path in (ROOT / prefix).rglob("*.py"):
            if "_stubs" in path.parts:
                continue
            relative = path.parent.relative_to(ROOT).as_posix()
            package = folder_to_package.get(relative, relative.replace("/", "."))
            for module in imports(path, package):
                target = layer_of_module(module, dirs)
                if target and target != layer:
                    graph.setdefault(layer, {}).setdefault(target, f"{path.relative_to(ROOT)} imports {module}")
    return graph


def test_every_layer_imports_only_downward():
    wrong = [f"{layer} -> {target}: {where}" for layer, targets in edges().items()
             for target, where in targets.items() if target not in ALLOWED[layer]]
    assert not wrong, wrong


def test_the_import_graph_between_layers_is_a_dag():
    graph = {layer: set(targets) for layer, targets in edges().items()}

    def reaches(start: str, goal: str, seen: frozenset = frozenset()) -> bool:
        return any(n == goal or (n not in seen and reaches(n, goal, seen | {n})) for n in graph.get(start, ()))

    assert not [layer for layer in graph if reaches(layer, layer)]


def dict_literals_with_key(key: str, value: str | None = None) -> list[str]:
    """Every dict literal in our code with `key` among its string keys (mapped to `value`, if given): a table of
    that vocabulary."""
    found = []
    for prefix in LAYERS:
        for path in (ROOT / prefix).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Dict) and any(
                        isinstance(k, ast.Constant) and k.value == key
                        and (value is None or isinstance(v, ast.Constant) and v.value == value)
                        for k, v in zip(node.keys, node.values)):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


def test_one_dtype_table():
    from crossdeploy.export import modelspec
    from crossdeploy.repository import NUMPY_TO_V2, V2_TO_NUMPY, vocabulary

    tables = dict_literals_with_key("FP32")
    assert tables and all(where.startswith("crossdeploy/repository/vocabulary.py") for where in tables), tables
    assert all(np.dtype(t) == V2_TO_NUMPY[name] for name, t in modelspec.DATATYPES.items())
    assert all(NUMPY_TO_V2[dtype] == name for name, dtype in V2_TO_NUMPY.items())
    assert vocabulary.V2_TO_NUMPY is V2_TO_NUMPY


def test_one_platform_and_eager_table():
    for key, value in (("torch-eager", "pytorch_eager"), ("pytorch", "torch-eager")):  # PLATFORMS, EAGER_FORMAT
        tables = dict_literals_with_key(key, value)
        assert tables and all(where.startswith("crossdeploy/repository/vocabulary.py") for where in tables), tables


def test_one_default_tolerance():
    from crossdeploy.export import pathways
    from crossdeploy.export.modelspec import ModelSpecFile
    from crossdeploy.repository import FLOAT_TOLERANCE, INT8_TOLERANCE

    assert ModelSpecFile.model_fields["tolerance"].default is FLOAT_TOLERANCE
    assert {p.tolerance for p in pathways.PATHWAYS} == {FLOAT_TOLERANCE, INT8_TOLERANCE}
    # No other module writes a tolerance literal (a Tolerance(atol=...) call with numbers of its own).
    literal = []
    for prefix in LAYERS:
        for path in (ROOT / prefix).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Tolerance"
                        and any(isinstance(k.value, ast.Constant) for k in node.keywords)):
                    literal.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert all("vocabulary.py" in where for where in literal), literal


def test_one_format_vocabulary():
    from crossdeploy.export.pathways import PATHWAYS
    from crossdeploy.repository import EAGER_FORMAT, FORMATS, PLATFORMS
    from crossdeploy.runtimes import REGISTRY

    assert set(REGISTRY) == set(FORMATS) == set(PLATFORMS)
    assert {p.format for p in PATHWAYS} <= set(FORMATS)
    assert set(EAGER_FORMAT.values()) <= set(FORMATS)


def test_one_inference_package_list():
    from crossdeploy import versions
    from crossdeploy.bench import run

    assert run.INFERENCE_PACKAGES is versions.INFERENCE_PACKAGES


def test_every_runtime_format_runs_in_one_ray_family():
    from crossdeploy.runtimes import REGISTRY
    from crossdeploy.serving.ray_engine.families import FAMILY_OF_FORMAT
    from crossdeploy.settings import FAMILIES

    assert set(FAMILY_OF_FORMAT) == set(REGISTRY)
    assert set(FAMILY_OF_FORMAT.values()) == set(FAMILIES)

"""A model spec: one small TOML file that tells crossdeploy how to build, feed and judge a model
("bring your own model"). Loading validates everything it can before any export runs, and every problem is one
line naming the field and what was expected (`SpecError`, CLI exit code 2).

    name = "my-model"
    framework = "pytorch"                      # or "keras"
    factory = "my_package.models:build"        # returns an nn.Module / a Keras model
    weights = "weights.pt"                     # optional, relative to the spec file ({workdir} expands)
    required = ["torch-onnx"]                  # pathways whose failure fails the run ("all": every one)
    opset = 18                                 # optional: the ONNX opset asked of the PyTorch exporter
    variant_prefix = "my-model-"               # optional: served as my-model-torch-onnx, ... (default name + "-")
    int8_keep_float = 4                        # optional: int8 curve, 0..4 most sensitive nodes kept float
    [[inputs]]  name = "x"  datatype = "FP32"  shape = [-1, 8, 8]
    [[outputs]] name = "y"  datatype = "FP32"  shape = [-1, 10]
    [samples]   file = "samples.npz"           # arrays x (and optional y); or loader = "module:function"
                calibration = "module:function"  # optional int8 calibration inputs (default: the samples)
    [tolerance] atol = 1e-4  rtol = 1e-3

Parts: the schema (export/modelspec_schema.py), the samples and the code a spec names
(export/modelspec_samples.py), the model built and checked (export/modelspec_build.py).
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

from pydantic import ValidationError

from .modelspec_build import build_model, run_source
from .modelspec_samples import calibration, check_inputs, check_labels, read_samples, resolve
from .modelspec_schema import DATATYPES, LoadedSpec, ModelSpecFile, SpecError

__all__ = ["DATATYPES", "LoadedSpec", "ModelSpecFile", "SpecError", "build_model", "load_spec", "resolve", "run_source"]


def load_spec(path: Path | str, workdir: Path | str | None = None, require_weights: bool = True) -> LoadedSpec:
    """`workdir` fills `{workdir}` in the weights path (default: CROSSDEPLOY_WORKDIR, else ./build). The spec's
    folder is importable, so a factory module may sit next to the spec."""
    path = Path(path).resolve() if Path(path).exists() else Path(path)
    if path.parent.is_dir() and str(path.parent) not in sys.path:
        sys.path.append(str(path.parent))
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError as exc:
        raise SpecError(str(path), "no such spec file") from exc
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(str(path), f"not valid TOML: {exc}") from exc
    try:
        spec = ModelSpecFile.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "(top level)"
        message = first["msg"].removeprefix("Value error, ")
        raise SpecError(str(path), f"{where}: {message}") from exc
    weights = None
    if spec.weights:
        if workdir is None:
            from crossdeploy.settings import Settings

            workdir = Settings().workdir
        weights = (path.parent / spec.weights.replace("{workdir}", str(Path(workdir).resolve()))).resolve()
        if require_weights and not weights.is_file():
            hint = " (run `crossdeploy train` for the built-in models)" if "{workdir}" in spec.weights else ""
            raise SpecError(str(path), f"weights: {weights} does not exist{hint}")
    resolve(spec.factory, path, "factory")
    x, y = read_samples(spec, path)
    inputs = check_inputs(spec, path, x)
    labels = check_labels(spec, path, y, rows=len(next(iter(inputs.values()))))
    return LoadedSpec(path=path, spec=spec, weights=weights, x=inputs, y=labels,
                      calibration=calibration(spec, path, inputs))

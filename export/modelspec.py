"""A model spec: one small TOML file that tells crossdeploy how to build, feed and judge a model (issue 7's
"bring your own model"). Loading validates everything it can before any export runs, and every problem is one
line naming the field and what was expected (`SpecError`, CLI exit code 2).

    name = "my-model"
    framework = "pytorch"                      # or "keras"
    factory = "my_package.models:build"        # returns an nn.Module / a Keras model
    weights = "weights.pt"                     # optional, relative to the spec file
    required = ["torch-onnx"]                  # pathways whose failure fails the run
    [[inputs]]  name = "x"  datatype = "FP32"  shape = [-1, 8, 8]
    [[outputs]] name = "y"  datatype = "FP32"  shape = [-1, 10]
    [samples]   file = "samples.npz"           # arrays x (and optional y); or loader = "module:function"
    [tolerance] atol = 1e-4  rtol = 1e-3
"""

from __future__ import annotations

import importlib
import re
import tomllib
from pathlib import Path
from typing import Callable, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from crossdeploy.errors import ConfigError

from .spec import TensorSignature, Tolerance

FACTORY = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
DATATYPES = {"FP32": np.float32, "FP64": np.float64, "INT64": np.int64, "INT32": np.int32, "UINT8": np.uint8}


class SpecError(ConfigError):
    """A spec that cannot be used; the CLI prints it in one line and exits with 2."""

    exit_code = 2


class Signature(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1)
    datatype: Literal["FP32", "FP64", "INT64", "INT32", "UINT8"]
    shape: list[int] = Field(min_length=1)

    @field_validator("shape")
    @classmethod
    def _dims(cls, shape: list[int]) -> list[int]:
        if shape[0] != -1 and shape[0] < 1:
            raise ValueError("the first (batch) axis must be -1 (dynamic) or a positive size")
        if any(d < 1 for d in shape[1:]):
            raise ValueError("every axis after the batch axis must be a positive size")
        return shape

    def signature(self) -> TensorSignature:
        return TensorSignature(name=self.name, datatype=self.datatype, shape=tuple(self.shape))


class Samples(BaseModel):
    model_config = ConfigDict(extra="forbid")
    file: str | None = None
    loader: str | None = None

    @model_validator(mode="after")
    def _one(self) -> "Samples":
        if (self.file is None) == (self.loader is None):
            raise ValueError("give exactly one of 'file' (.npy or .npz) or 'loader' (module:function)")
        if self.loader is not None and not FACTORY.match(self.loader):
            raise ValueError(f"loader must look like 'package.module:function', got {self.loader!r}")
        return self


class ModelSpecFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    framework: Literal["pytorch", "keras"]
    factory: str
    weights: str | None = None
    inputs: list[Signature] = Field(min_length=1)
    outputs: list[Signature] = Field(min_length=1)
    samples: Samples
    tolerance: Tolerance = Tolerance(atol=1e-4, rtol=1e-3, min_agreement=1.0)
    required: list[str] = []

    @field_validator("factory")
    @classmethod
    def _factory(cls, value: str) -> str:
        if not FACTORY.match(value):
            raise ValueError(f"must look like 'package.module:function', got {value!r}")
        return value


class LoadedSpec(BaseModel):
    """A validated spec with its sample data loaded and its paths resolved."""

    model_config = ConfigDict(arbitrary_types_allowed=True)
    path: Path
    spec: ModelSpecFile
    weights: Path | None
    x: dict[str, np.ndarray]
    y: np.ndarray | None


def resolve(reference: str, path: Path, field: str) -> Callable:
    module_name, _, attribute = reference.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # an import can raise anything; name the field and keep the first line
        raise SpecError(str(path), f"{field}: cannot import '{module_name}': {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from exc
    function = getattr(module, attribute, None)
    if not callable(function):
        raise SpecError(str(path), f"{field}: '{module_name}' has no callable '{attribute}'")
    return function


def _read_samples(spec: ModelSpecFile, path: Path) -> tuple[object, object]:
    if spec.samples.loader:
        produced = resolve(spec.samples.loader, path, "samples.loader")()
        return produced if isinstance(produced, tuple) else (produced, None)
    file = (path.parent / spec.samples.file).resolve()
    if not file.is_file():
        raise SpecError(str(path), f"samples.file: {file} does not exist")
    try:
        data = np.load(file, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise SpecError(str(path), f"samples.file: {file} is not a .npy/.npz numpy file ({exc})") from exc
    if isinstance(data, np.ndarray):
        return data, None
    if "x" not in data:
        raise SpecError(str(path), f"samples.file: {file} has arrays {sorted(data.files)}, expected 'x' (and optionally 'y')")
    return data["x"], data["y"] if "y" in data else None


def _check_samples(spec: ModelSpecFile, path: Path, x: object, y: object) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    arrays = x if isinstance(x, dict) else {spec.inputs[0].name: x}
    if set(arrays) != {s.name for s in spec.inputs}:
        raise SpecError(str(path), f"samples: inputs {sorted(arrays)} do not match the spec's {sorted(s.name for s in spec.inputs)}")
    checked = {}
    for signature in spec.inputs:
        array = np.asarray(arrays[signature.name])
        expected = signature.shape[1:]
        if array.ndim != len(signature.shape) or list(array.shape[1:]) != expected or array.shape[0] < 2:
            raise SpecError(str(path), f"samples: input '{signature.name}' has shape {list(array.shape)}, expected "
                                       f"[N >= 2, {', '.join(map(str, expected))}] to match inputs.shape {signature.shape}")
        if array.dtype.kind not in "biuf":
            raise SpecError(str(path), f"samples: input '{signature.name}' holds {array.dtype}, expected numbers")
        checked[signature.name] = np.ascontiguousarray(array, dtype=DATATYPES[signature.datatype])
    labels = None
    if y is not None:
        labels = np.asarray(y)
        rows = len(next(iter(checked.values())))
        if labels.ndim != 1 or len(labels) != rows:
            raise SpecError(str(path), f"samples: labels have shape {list(labels.shape)}, expected [{rows}] (one per sample)")
    return checked, labels


def load_spec(path: Path | str) -> LoadedSpec:
    path = Path(path)
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
        weights = (path.parent / spec.weights).resolve()
        if not weights.is_file():
            raise SpecError(str(path), f"weights: {weights} does not exist")
    resolve(spec.factory, path, "factory")
    x, y = _check_samples(spec, path, *_read_samples(spec, path))
    return LoadedSpec(path=path, spec=spec, weights=weights, x=x, y=y)


def build_model(loaded: LoadedSpec):
    """The model the factory returns, with its weights, checked against the spec on two samples: a model that
    does not take the declared inputs or does not return the declared outputs is refused here, not mid-export."""
    spec, path = loaded.spec, loaded.path
    model = resolve(spec.factory, path, "factory")()
    feed = {k: v[:2] for k, v in loaded.x.items()}
    try:
        if spec.framework == "pytorch":
            import torch

            if loaded.weights:
                model.load_state_dict(torch.load(loaded.weights, weights_only=True))
            model.eval()
            with torch.inference_mode():
                produced = model(*(torch.from_numpy(v) for v in feed.values()))
            values = [t.numpy() for t in (produced if isinstance(produced, (tuple, list)) else [produced])]
        else:
            if loaded.weights:
                model.load_weights(str(loaded.weights))
            produced = model([*feed.values()] if len(feed) > 1 else next(iter(feed.values())), training=False)
            values = [np.asarray(t) for t in (produced if isinstance(produced, (tuple, list)) else [produced])]
    except Exception as exc:  # whatever the framework raises for a mismatched input, in one line
        shapes = {k: list(v.shape) for k, v in feed.items()}
        raise SpecError(str(path), f"inputs: the model does not accept samples shaped {shapes}: "
                                   f"{str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__}") from exc
    if len(values) != len(spec.outputs):
        raise SpecError(str(path), f"outputs: the model returns {len(values)} output(s), the spec declares {len(spec.outputs)}")
    for value, signature in zip(values, spec.outputs):
        if list(value.shape[1:]) != signature.shape[1:] or value.shape[0] != 2:
            raise SpecError(str(path), f"outputs: '{signature.name}' comes out as {[-1, *value.shape[1:]]}, the spec declares {signature.shape}")
    return model

"""A model spec: one small TOML file that tells crossdeploy how to build, feed and judge a model (issue 7's
"bring your own model"). Loading validates everything it can before any export runs, and every problem is one
line naming the field and what was expected (`SpecError`, CLI exit code 2).

    name = "my-model"
    framework = "pytorch"                      # or "keras"
    factory = "my_package.models:build"        # returns an nn.Module / a Keras model
    weights = "weights.pt"                     # optional, relative to the spec file ({workdir} expands)
    required = ["torch-onnx"]                  # pathways whose failure fails the run ("all": every one)
    opset = 18                                 # optional: the ONNX opset asked of the PyTorch exporter
    variant_prefix = "my-model-"               # optional: served as my-model-torch-onnx, ... (default name + "-")
    [[inputs]]  name = "x"  datatype = "FP32"  shape = [-1, 8, 8]
    [[outputs]] name = "y"  datatype = "FP32"  shape = [-1, 10]
    [samples]   file = "samples.npz"           # arrays x (and optional y); or loader = "module:function"
                calibration = "module:function"  # optional int8 calibration inputs (default: the samples)
    [tolerance] atol = 1e-4  rtol = 1e-3
"""

from __future__ import annotations

import importlib
import re
import sys
import tomllib
from pathlib import Path
from typing import Callable, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from crossdeploy.errors import ConfigError, first_line

from crossdeploy.repository import FLOAT_TOLERANCE, V2_TO_NUMPY, TensorSignature, Tolerance

FACTORY = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
SPEC_DATATYPES = ("FP32", "FP64", "INT64", "INT32", "UINT8")  # what the exporters and samples handle
DATATYPES = {name: V2_TO_NUMPY[name].type for name in SPEC_DATATYPES}


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
        if shape[0] != -1:
            raise ValueError(f"the first (batch) axis must be -1: every pathway is exported with a dynamic batch, got {shape[0]}")
        if any(d < 1 for d in shape[1:]):
            raise ValueError("every axis after the batch axis must be a positive size")
        return shape

    def signature(self) -> TensorSignature:
        return TensorSignature(name=self.name, datatype=self.datatype, shape=tuple(self.shape))


class Samples(BaseModel):
    model_config = ConfigDict(extra="forbid")
    file: str | None = None
    loader: str | None = None
    calibration: str | None = None  # "module:function" returning int8 calibration inputs (never the test samples)

    @model_validator(mode="after")
    def _one(self) -> "Samples":
        if (self.file is None) == (self.loader is None):
            raise ValueError("give exactly one of 'file' (.npy or .npz) or 'loader' (module:function)")
        for field, value in (("loader", self.loader), ("calibration", self.calibration)):
            if value is not None and not FACTORY.match(value):
                raise ValueError(f"{field} must look like 'package.module:function', got {value!r}")
        return self


class ModelSpecFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    framework: Literal["pytorch", "keras"]
    factory: str
    weights: str | None = None
    inputs: list[Signature] = Field(min_length=1)
    outputs: list[Signature] = []  # empty: taken from what the model returns on two samples (named "output")
    samples: Samples
    tolerance: Tolerance = FLOAT_TOLERANCE
    required: list[str] = []
    opset: int = Field(18, ge=13, le=23)
    variant_prefix: str | None = Field(None, pattern=r"^[a-z0-9-]*$")
    description: str = ""

    @field_validator("tolerance", mode="before")
    @classmethod
    def _tolerance(cls, value):
        """A partial [tolerance] keeps the defaults for what it leaves out (an atol left out would turn off the
        value comparison)."""
        if isinstance(value, dict):
            return {**FLOAT_TOLERANCE.model_dump(exclude_none=True), **value}
        return value

    @field_validator("inputs", "outputs")
    @classmethod
    def _one_tensor(cls, tensors: list[Signature], info) -> list[Signature]:
        if len(tensors) != 1 and not (info.field_name == "outputs" and not tensors):
            raise ValueError(f"the exporters take one {info.field_name[:-1]} tensor per model; this spec declares {len(tensors)}")
        return tensors

    @field_validator("required")
    @classmethod
    def _required(cls, names: list[str]) -> list[str]:
        from .pathways import BY_NAME

        unknown = [n for n in names if n != "all" and n not in BY_NAME]
        if unknown:
            raise ValueError(f"unknown pathway(s) {', '.join(unknown)}; known: all, {', '.join(BY_NAME)}")
        return names

    @model_validator(mode="after")
    def _required_source(self) -> "ModelSpecFile":
        from .pathways import BY_NAME

        foreign = [n for n in self.required if n != "all" and BY_NAME[n].source != self.framework]
        if foreign:
            raise ValueError(f"required: {', '.join(foreign)} start(s) from the other framework, not {self.framework}")
        return self

    @property
    def prefix(self) -> str:
        return f"{self.name}-" if self.variant_prefix is None else self.variant_prefix

    def variant(self, pathway: str) -> str:
        return f"{self.prefix}{pathway}"

    def is_required(self, pathway: str) -> bool:
        return "all" in self.required or pathway in self.required

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
    calibration: np.ndarray

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def framework(self) -> str:
        return self.spec.framework


def resolve(reference: str, path: Path, field: str) -> Callable:
    module_name, _, attribute = reference.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # an import can raise anything; name the field and keep the first line
        raise SpecError(str(path), f"{field}: cannot import '{module_name}': {first_line(exc)}") from exc
    function = getattr(module, attribute, None)
    if not callable(function):
        raise SpecError(str(path), f"{field}: '{module_name}' has no callable '{attribute}'")
    return function


def call(reference: str, path: Path, field: str):
    function = resolve(reference, path, field)
    try:
        return function()
    except Exception as exc:  # a user's loader can raise anything
        raise SpecError(str(path), f"{field}: {reference}() raised: {first_line(exc, 200)}") from exc


def _read_samples(spec: ModelSpecFile, path: Path) -> tuple[object, object]:
    if spec.samples.loader:
        produced = call(spec.samples.loader, path, "samples.loader")
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
        target = np.dtype(DATATYPES[signature.datatype])
        if array.dtype.kind not in "biuf" or not np.can_cast(array.dtype, target, "same_kind"):
            raise SpecError(str(path), f"samples: input '{signature.name}' holds {array.dtype}, which does not convert "
                                       f"to {signature.datatype} without loss")
        checked[signature.name] = np.ascontiguousarray(array, dtype=target)
    labels = None
    if y is not None:
        labels = np.asarray(y)
        rows = len(next(iter(checked.values())))
        if labels.ndim != 1 or len(labels) != rows:
            raise SpecError(str(path), f"samples: labels have shape {list(labels.shape)}, expected [{rows}] (one per sample)")
        if labels.dtype.kind not in "iu":
            raise SpecError(str(path), f"samples: labels hold {labels.dtype}, expected integer class indices")
        classes = spec.outputs[0].shape[-1] if spec.outputs and len(spec.outputs[0].shape) == 2 else None
        if labels.min() < 0 or (classes and labels.max() >= classes):
            raise SpecError(str(path), f"samples: labels run from {labels.min()} to {labels.max()}, expected class "
                                       f"indices 0..{(classes or 1) - 1}")
    return checked, labels


def _calibration(spec: ModelSpecFile, path: Path, x: dict[str, np.ndarray]) -> np.ndarray:
    signature = spec.inputs[0]
    if not spec.samples.calibration:
        return x[signature.name]
    produced = np.asarray(call(spec.samples.calibration, path, "samples.calibration"))
    if list(produced.shape[1:]) != signature.shape[1:] or produced.ndim != len(signature.shape) or not len(produced):
        raise SpecError(str(path), f"samples.calibration: shape {list(produced.shape)}, expected [N >= 1, "
                                   f"{', '.join(map(str, signature.shape[1:]))}]")
    return np.ascontiguousarray(produced, dtype=DATATYPES[signature.datatype])


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
    x, y = _check_samples(spec, path, *_read_samples(spec, path))
    return LoadedSpec(path=path, spec=spec, weights=weights, x=x, y=y, calibration=_calibration(spec, path, x))


def _load_weights(loaded: LoadedSpec, model) -> None:
    try:
        if loaded.spec.framework == "pytorch":
            import torch

            model.load_state_dict(torch.load(loaded.weights, map_location="cpu", weights_only=True))
        else:
            model.load_weights(str(loaded.weights))
    except Exception as exc:  # a state_dict for another architecture, a file of another format
        raise SpecError(str(loaded.path), f"weights: {loaded.weights} does not fit the model the factory builds: "
                                          f"{first_line(exc, 200)}") from exc


def run_source(framework: str, model, x: np.ndarray) -> list[np.ndarray]:
    """The source model itself on `x`: the reference every pathway is compared with."""
    if framework == "pytorch":
        import torch

        with torch.inference_mode():
            produced = model(torch.from_numpy(np.ascontiguousarray(x)))
        return [t.numpy() for t in (produced if isinstance(produced, (tuple, list)) else [produced])]
    produced = model(x, training=False)
    return [np.asarray(t) for t in (produced if isinstance(produced, (tuple, list)) else [produced])]


def build_model(loaded: LoadedSpec):
    """The model the factory returns, with its weights, checked against the spec on two samples: a model that
    does not take the declared inputs or does not return the declared outputs is refused here, not mid-export."""
    spec, path = loaded.spec, loaded.path
    try:
        model = resolve(spec.factory, path, "factory")()
    except SpecError:
        raise
    except Exception as exc:
        raise SpecError(str(path), f"factory: {spec.factory}() raised: {first_line(exc, 200)}") from exc
    if spec.framework == "pytorch":
        import torch

        if not isinstance(model, torch.nn.Module):
            raise SpecError(str(path), f"factory: {spec.factory}() returned {type(model).__name__}, expected a torch.nn.Module")
    else:
        import tf_keras

        if not isinstance(model, tf_keras.Model):
            raise SpecError(str(path), f"factory: {spec.factory}() returned {type(model).__name__}, expected a tf_keras Model "
                                       "(Keras 2 API: `import tf_keras`)")
    if loaded.weights:
        _load_weights(loaded, model)
    if spec.framework == "pytorch":
        model.eval()
    feed = next(iter(loaded.x.values()))[:2]
    try:
        values = run_source(spec.framework, model, feed)
    except Exception as exc:  # whatever the framework raises for a mismatched input, in one line
        raise SpecError(str(path), f"inputs: the model does not accept samples shaped {list(feed.shape)}: {first_line(exc, 200)}") from exc
    if not spec.outputs:  # not declared: what the model returns, batch axis dynamic
        if len(values) != 1:
            raise SpecError(str(path), f"outputs: the model returns {len(values)} outputs; declare the one to serve")
        names = {np.dtype(v): k for k, v in DATATYPES.items()}
        if values[0].dtype not in names or values[0].ndim < 1:
            raise SpecError(str(path), f"outputs: the model returns {values[0].dtype} {list(values[0].shape)}; declare [[outputs]]")
        spec.outputs = [Signature(name="output", datatype=names[values[0].dtype], shape=[-1, *values[0].shape[1:]])]
    if len(values) != len(spec.outputs):
        raise SpecError(str(path), f"outputs: the model returns {len(values)} output(s), the spec declares {len(spec.outputs)}")
    for value, signature in zip(values, spec.outputs):
        if value.dtype != np.dtype(DATATYPES[signature.datatype]):
            raise SpecError(str(path), f"outputs: '{signature.name}' comes out as {value.dtype}, the spec declares {signature.datatype}")
        if list(value.shape[1:]) != signature.shape[1:] or value.shape[0] != 2:
            raise SpecError(str(path), f"outputs: '{signature.name}' comes out as {[-1, *value.shape[1:]]}, the spec declares {signature.shape}")
    return model

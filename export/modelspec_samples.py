"""A spec's sample data and the code it names: the samples (and labels) checked against the declared inputs,
the int8 calibration inputs, and `module:function` references imported with one-line errors."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Callable

import numpy as np

from crossdeploy.errors import first_line

from .modelspec_schema import DATATYPES, ModelSpecFile, SpecError


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


def read_samples(spec: ModelSpecFile, path: Path) -> tuple[object, object]:
    """The samples as given (a loader's return value or the arrays of a .npy/.npz file), labels or None."""
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


def check_inputs(spec: ModelSpecFile, path: Path, x: object) -> dict[str, np.ndarray]:
    """The samples per input, in the declared dtype; refused if a shape differs or the cast would lose values."""
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
    return checked


def check_labels(spec: ModelSpecFile, path: Path, y: object, rows: int) -> np.ndarray | None:
    """Integer class indices, one per sample, within the declared classes (when the output declares them)."""
    if y is None:
        return None
    labels = np.asarray(y)
    if labels.ndim != 1 or len(labels) != rows:
        raise SpecError(str(path), f"samples: labels have shape {list(labels.shape)}, expected [{rows}] (one per sample)")
    if labels.dtype.kind not in "iu":
        raise SpecError(str(path), f"samples: labels hold {labels.dtype}, expected integer class indices")
    classes = spec.outputs[0].shape[-1] if spec.outputs and len(spec.outputs[0].shape) == 2 else None
    if labels.min() < 0 or (classes and labels.max() >= classes):
        raise SpecError(str(path), f"samples: labels run from {labels.min()} to {labels.max()}, expected class "
                                   f"indices 0..{(classes or 1) - 1}")
    return labels


def calibration(spec: ModelSpecFile, path: Path, x: dict[str, np.ndarray]) -> np.ndarray:
    """The int8 calibration inputs: the spec's own, or else the samples."""
    signature = spec.inputs[0]
    if not spec.samples.calibration:
        return x[signature.name]
    produced = np.asarray(call(spec.samples.calibration, path, "samples.calibration"))
    if list(produced.shape[1:]) != signature.shape[1:] or produced.ndim != len(signature.shape) or not len(produced):
        raise SpecError(str(path), f"samples.calibration: shape {list(produced.shape)}, expected [N >= 1, "
                                   f"{', '.join(map(str, signature.shape[1:]))}]")
    return np.ascontiguousarray(produced, dtype=DATATYPES[signature.datatype])

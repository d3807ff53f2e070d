"""The words every layer shares, each said once: tensor signatures, the dtype table, format names and the
platform Triton would call each, which format is a source framework's eager reference, the default parity
tolerances and the one rule that applies them. Imports numpy and pydantic only."""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict


class TensorSignature(BaseModel):
    model_config = ConfigDict(frozen=True)
    name: str
    datatype: str  # KServe V2 datatype name: FP32, INT64, ...
    shape: tuple[int, ...]  # -1 marks a dynamic axis


# KServe V2 datatype names <-> numpy, and the TF Serving DT_ name of each.
V2_TO_NUMPY: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_), "UINT8": np.dtype(np.uint8), "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32), "UINT64": np.dtype(np.uint64), "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16), "INT32": np.dtype(np.int32), "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16), "FP32": np.dtype(np.float32), "FP64": np.dtype(np.float64),
}
NUMPY_TO_V2 = {dtype: name for name, dtype in V2_TO_NUMPY.items()}
V2_TO_TF = {"FP32": "DT_FLOAT", "FP64": "DT_DOUBLE", "INT32": "DT_INT32", "INT64": "DT_INT64", "UINT8": "DT_UINT8",
            "FP16": "DT_HALF", "BOOL": "DT_BOOL", "INT8": "DT_INT8", "BYTES": "DT_STRING"}

# Format names (the runtime registry's keys) and the platform each is reported as (V2 model metadata, Triton's
# model config): Triton's own name where Triton has a backend for the format (onnxruntime_onnx, pytorch_libtorch,
# torch_aoti, tensorflow_savedmodel), a name in the same style where it has none.
PLATFORMS = {"onnx": "onnxruntime_onnx", "savedmodel": "tensorflow_savedmodel", "tflite": "tensorflow_tflite",
             "torchscript": "pytorch_libtorch", "torch-eager": "pytorch_eager", "torch-export": "pytorch_export",
             "aoti": "torch_aoti", "executorch": "executorch_pte", "keras": "tensorflow_keras"}
FORMATS = tuple(PLATFORMS)
SOURCE_FRAMEWORKS = ("pytorch", "keras")
# The format of each source framework's eager variant: the reference every other variant of a model is checked against.
EAGER_FORMAT = {"pytorch": "torch-eager", "keras": "keras"}


class Tolerance(BaseModel):
    """float: |a-b| <= atol + rtol*|b| element-wise, and argmax agreement >= min_agreement.
    int8 (atol None): values are not compared; agreement and accuracy drop decide."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    atol: float | None = None
    rtol: float | None = None
    min_agreement: float = 1.0
    max_accuracy_drop: float | None = None

    def bound(self, reference: np.ndarray) -> np.ndarray | None:
        """The largest |a-b| allowed at each element of `reference`; None when values are not compared."""
        if self.atol is None:
            return None
        return self.atol + (self.rtol or 0.0) * np.abs(reference.astype(np.float64))

    def breaches(self, candidate: np.ndarray, reference: np.ndarray) -> int | None:
        """How many elements break the rule (None: values are not compared). A NaN on either side is a breach."""
        bound = self.bound(reference)
        if bound is None:
            return None
        diff = np.abs(candidate.astype(np.float64) - reference.astype(np.float64))
        return int((~(diff <= bound)).sum())

    def overridden(self, values: dict) -> "Tolerance":
        """This tolerance with some fields replaced: a partial override keeps the rest (an atol left out must not
        turn the value comparison off)."""
        return Tolerance.model_validate({**self.model_dump(), **values})

    def describe(self) -> str:
        if self.atol is None:
            drop = f", accuracy drop <= {self.max_accuracy_drop * 100:g} points" if self.max_accuracy_drop is not None else ""
            return f"values not compared; argmax agreement >= {self.min_agreement:.0%}{drop}"
        return f"|a-b| <= {self.atol:g} + {self.rtol or 0.0:g}*|b|; argmax agreement >= {self.min_agreement:.0%}"


FLOAT_TOLERANCE = Tolerance(atol=1e-4, rtol=1e-3, min_agreement=1.0)
INT8_TOLERANCE = Tolerance(min_agreement=0.98, max_accuracy_drop=0.02)


def default_tolerance(precision: str) -> Tolerance:
    return INT8_TOLERANCE if precision == "int8" else FLOAT_TOLERANCE


# An int8 intermediate tensor leaves the tolerance beyond this many quantization steps (3/16 of its range): the
# int8 variant's own tolerance compares no values, so diverge holds each quantized tensor to this instead.
INT8_STEPS = 48


def quantization_bound(step: float) -> Tolerance:
    """The bound of an int8 intermediate tensor whose (coarsest) quantization step is `step`."""
    return Tolerance(atol=INT8_STEPS * step, rtol=0.0)


def reference_of(config, configs) -> str | None:
    """The eager variant of the same model and source framework among `configs` (VariantConfig-like objects)."""
    eager = EAGER_FORMAT.get(config.source_framework)
    return next((c.name for c in configs if c.model == config.model and c.source_framework == config.source_framework
                 and c.format == eager), None)

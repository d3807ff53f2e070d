"""The frozen model contract every variant of both models serves, and the default parity tolerances."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict


class TensorSignature(BaseModel):
    model_config = ConfigDict(frozen=True)
    name: str
    datatype: str  # KServe V2 datatype name: FP32, INT64, ...
    shape: tuple[int, ...]  # -1 marks a dynamic axis


class Tolerance(BaseModel):
    """float: |a-b| <= atol + rtol*|b| element-wise, and argmax agreement >= min_agreement.
    int8: values are not compared; agreement and accuracy drop decide."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    atol: float | None = None
    rtol: float | None = None
    min_agreement: float = 1.0
    max_accuracy_drop: float | None = None


FLOAT_TOLERANCE = Tolerance(atol=1e-4, rtol=1e-3, min_agreement=1.0)
INT8_TOLERANCE = Tolerance(min_agreement=0.98, max_accuracy_drop=0.02)


@dataclass(frozen=True)
class ModelSpec:
    """The contract the exporters need, taken from a model spec file (export/modelspec.py)."""

    name: str
    inputs: tuple[TensorSignature, ...]
    outputs: tuple[TensorSignature, ...]
    opset: int
    torch_entry: str  # "module:function" that builds the model (torch-eager: the state_dict's architecture)
    tolerance: Tolerance | None = None  # the spec's float tolerance (None: FLOAT_TOLERANCE)
    variant_prefix: str = ""  # variant names are <prefix><pathway>

    def variant(self, pathway: str) -> str:
        return f"{self.variant_prefix}{pathway}"


DIGITS = ModelSpec(
    name="digits-cnn",
    inputs=(TensorSignature(name="image", datatype="FP32", shape=(-1, 8, 8)),),
    outputs=(TensorSignature(name="logits", datatype="FP32", shape=(-1, 10)),),
    opset=18,
    torch_entry="crossdeploy.models.torch_cnn:build",
)
BUILTIN_SPECS = Path(__file__).resolve().parents[1] / "models" / "specs"

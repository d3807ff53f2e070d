"""The frozen model contract the exporters need (taken from a model spec file)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from crossdeploy.repository import TensorSignature, Tolerance


@dataclass(frozen=True)
class ModelSpec:
    """The contract the exporters need, taken from a model spec file (export/modelspec.py)."""

    name: str
    inputs: tuple[TensorSignature, ...]
    outputs: tuple[TensorSignature, ...]
    opset: int
    torch_entry: str  # "module:function" that builds the model (torch-eager: the state_dict's architecture)
    tolerance: Tolerance | None = None  # the spec's float tolerance (None: the default float tolerance)
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

"""The frozen contract every exporter works to, and where the built-in model spec files live."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from crossdeploy.repository import TensorSignature, Tolerance


@dataclass(frozen=True)
class ExportContract:
    """What the exporters need to know of a model, taken from its spec file (export/modelspec.py)."""

    name: str
    inputs: tuple[TensorSignature, ...]
    outputs: tuple[TensorSignature, ...]
    opset: int
    factory: str  # "module:function" that builds the model (PyTorch or Keras): eager variants name their code by it
    tolerance: Tolerance | None = None  # the spec's float tolerance (None: the default float tolerance)
    variant_prefix: str = ""  # variant names are <prefix><pathway>

    def variant(self, pathway: str) -> str:
        return f"{self.variant_prefix}{pathway}"


DIGITS = ExportContract(
    name="digits-cnn",
    inputs=(TensorSignature(name="image", datatype="FP32", shape=(-1, 8, 8)),),
    outputs=(TensorSignature(name="logits", datatype="FP32", shape=(-1, 10)),),
    opset=18,
    factory="crossdeploy.models.torch_cnn:build",
)
BUILTIN_SPECS = Path(__file__).resolve().parents[1] / "models" / "specs"

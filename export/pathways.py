"""The pathway matrix: every variant the pipeline builds, how, what runs it and its upstream status.

Order matters: a pathway that reuses another's ONNX file comes after it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from crossdeploy.repository import Support, ToolStep, Tolerance, default_tolerance
from crossdeploy.versions import version_of


ACTIVE = "active"
TORCHSCRIPT_DEPRECATED = Support(status="deprecated", note="TorchScript is deprecated in favour of torch.export")
LITERT = Support(status="superseded", note="tf.lite is superseded by LiteRT; run here with ai-edge-litert")
TORCHSERVE = "TorchServe, which serves this format, is in limited maintenance"


@dataclass(frozen=True)
class Pathway:
    name: str
    source: str  # "pytorch" | "keras"
    format: str  # runtime registry key
    runtime: str  # package that runs the artifact
    exporter: str  # "module:function" inside crossdeploy.export
    support: Support
    precision: str = "fp32"

    @property
    def tolerance(self) -> Tolerance:
        return default_tolerance(self.precision)

    def runtime_step(self) -> ToolStep:
        return ToolStep(tool=self.runtime, version=version_of(self.runtime))

    def exporter_function(self) -> Callable:
        import importlib

        module, _, function = self.exporter.partition(":")
        return getattr(importlib.import_module(f"crossdeploy.export.{module}"), function)


def _ok(note: str) -> Support:
    return Support(status=ACTIVE, note=note)


PATHWAYS: tuple[Pathway, ...] = (
    Pathway("torch-eager", "pytorch", "torch-eager", "torch", "torch_exporters:export_state_dict",
            Support(status="limited-maintenance", note=f"state_dict + model code, as served behind Flask; {TORCHSERVE}")),
    Pathway("torch-torchscript", "pytorch", "torchscript", "torch", "torch_exporters:export_torchscript",
            Support(status="deprecated", note=f"{TORCHSCRIPT_DEPRECATED.note}; {TORCHSERVE}")),
    Pathway("torch-export", "pytorch", "torch-export", "torch", "torch_exporters:export_torch_program",
            _ok("torch.export is TorchScript's successor")),
    Pathway("torch-aoti", "pytorch", "aoti", "torch", "torch_exporters:export_aoti",
            _ok("AOTInductor: torch.export compiled ahead of time to a shared library")),
    Pathway("torch-onnx", "pytorch", "onnx", "onnxruntime", "torch_exporters:export_onnx",
            _ok("the dynamo ONNX exporter (the TorchScript-based one is deprecated)")),
    Pathway("torch-onnx-int8", "pytorch", "onnx", "onnxruntime", "quantize:export_onnx_int8",
            _ok("onnxruntime static QDQ quantization"), precision="int8"),
    Pathway("torch-savedmodel", "pytorch", "savedmodel", "tensorflow", "bridges.onnx2tf_bridge:export_savedmodel_via_onnx",
            _ok("PyTorch into TF Serving's format through ONNX (onnx2tf, community-maintained)")),
    Pathway("torch-tflite", "pytorch", "tflite", "ai-edge-litert", "bridges.onnx2tf_bridge:export_tflite_via_onnx",
            Support(status="superseded", note=f"through ONNX and onnx2tf; {LITERT.note}")),
    Pathway("torch-executorch", "pytorch", "executorch", "executorch", "torch_exporters:export_executorch",
            _ok("ExecuTorch supersedes PyTorch Mobile (lite interpreter)")),
    Pathway("keras-eager", "keras", "keras", "tf-keras", "keras_exporters:export_keras",
            _ok("tf_keras keeps the Keras 2 API alive beside Keras 3")),
    Pathway("keras-savedmodel", "keras", "savedmodel", "tensorflow", "keras_exporters:export_savedmodel",
            _ok("TF Serving's native format")),
    Pathway("keras-tflite", "keras", "tflite", "ai-edge-litert", "keras_exporters:export_tflite", LITERT),
    Pathway("keras-tflite-int8", "keras", "tflite", "ai-edge-litert", "keras_exporters:export_tflite_int8",
            Support(status="superseded", note=f"post-training int8; {LITERT.note}"), precision="int8"),
    Pathway("keras-onnx", "keras", "onnx", "onnxruntime", "bridges.tf2onnx_bridge:export_onnx_from_keras",
            _ok("tf2onnx (community-maintained, slow release cadence)")),
    Pathway("keras-torchscript", "keras", "torchscript", "torch", "bridges.onnx2torch_bridge:export_torchscript_from_onnx",
            Support(status="deprecated", note=f"Keras into PyTorch's world via ONNX and onnx2torch; {TORCHSCRIPT_DEPRECATED.note}")),
)

BY_NAME = {p.name: p for p in PATHWAYS}

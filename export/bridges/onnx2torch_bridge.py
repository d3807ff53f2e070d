"""ONNX -> PyTorch with onnx2torch, then traced to TorchScript: Keras into PyTorch's world.

onnx2torch imports torchvision for its NMS/RoiAlign converters; PyPI's torchvision cannot be installed
beside the CPU torch wheel, so `export/_stubs/torchvision` (documented there) stands in, on sys.path only
while onnx2torch is imported. The traced TorchScript needs neither.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from crossdeploy.errors import ExportError
from crossdeploy.export.repository import ToolStep
from crossdeploy.versions import version_of

from ..context import ExportContext, Exported
from ..torch_exporters import save_torchscript

STUBS = Path(__file__).resolve().parents[1] / "_stubs"


def _onnx2torch():
    try:
        import torchvision  # noqa: F401  (a real one, if a user has a working install)
    except Exception:
        sys.modules.pop("torchvision", None)
        sys.path.insert(0, str(STUBS))
        try:
            import torchvision  # noqa: F401,F811
        finally:
            sys.path.remove(str(STUBS))
    import onnx2torch

    return onnx2torch


def export_torchscript_from_onnx(ctx: ExportContext, out: Path, source: str = "keras-onnx") -> Exported:
    import onnx

    onnx_path = ctx.intermediates.get(source)
    if onnx_path is None:
        raise ExportError(source, "its ONNX file must be exported before onnx2torch can convert it")
    module = _onnx2torch().convert(onnx.load(str(onnx_path))).eval()
    save_torchscript(module, (torch.from_numpy(ctx.example.copy()),), out / "model.pt")
    return Exported(steps=[
        ToolStep(tool="tf2onnx", version=version_of("tf2onnx")),
        ToolStep(tool="onnx2torch", version=version_of("onnx2torch")),
        ToolStep(tool="torch.jit.trace", version=version_of("torch"), detail="TorchScript"),
    ])

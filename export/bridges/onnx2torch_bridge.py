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
from crossdeploy.repository import ToolStep
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


def _batch_free(module, path: Path, example: torch.Tensor) -> bool:
    """Whether the traced file gives the converted module's outputs at other batch sizes than the trace's."""
    traced = torch.jit.load(str(path))
    for rows in (1, len(example) + 3):
        x = example[torch.arange(rows) % len(example)]
        try:
            with torch.no_grad():
                if not torch.allclose(traced(x), module(x), atol=1e-5, rtol=1e-4):
                    return False
        except Exception:  # a Reshape to the traced batch raises at any other one
            return False
    return True


def export_torchscript_from_onnx(ctx: ExportContext, out: Path, source: str = "keras-onnx") -> Exported:
    import onnx

    onnx_path = ctx.intermediates.get(source)
    if onnx_path is None:
        raise ExportError(source, "its ONNX file must be exported before onnx2torch can convert it")
    module = _onnx2torch().convert(onnx.load(str(onnx_path))).eval()
    example = torch.from_numpy(ctx.example.copy())
    save_torchscript(module, (example,), out / "model.pt")
    batch = dict(dynamic_batch=True, max_batch=None, batch_note="")
    if not _batch_free(module, out / "model.pt", example):
        save_torchscript(module, (example[:1],), out / "model.pt")
        batch = dict(dynamic_batch=False, max_batch=1, batch_note=(
            "torch.jit.trace fixed the batch axis (onnx2torch computes a Reshape target from Shape in Python, and "
            "the trace records it as constants): traced at batch 1, and the adapter runs larger batches row by row"))
    return Exported(notes=list(ctx.workarounds.get(source, [])), **batch, steps=[
        ToolStep(tool="tf2onnx", version=version_of("tf2onnx")),
        ToolStep(tool="onnx2torch", version=version_of("onnx2torch")),
        ToolStep(tool="torch.jit.trace", version=version_of("torch"), detail="TorchScript"),
    ])

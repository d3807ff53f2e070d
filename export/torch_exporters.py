"""PyTorch-native targets: state_dict, TorchScript, torch.export, AOTInductor, ONNX (dynamo), ExecuTorch."""

from __future__ import annotations

import contextlib
import io
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from crossdeploy.repository import ToolStep
from crossdeploy.versions import version_of

from .context import ExportContext, Exported

MAX_BATCH = 4096  # upper bound declared for torch.export's symbolic batch dimension
# The XNNPACK delegate memory-plans its input for at most this many rows, whatever bound is declared
# (measured: 15 rows pass, 16 fail with "Attempted to resize a bounded tensor"); the adapter splits.
EXECUTORCH_XNNPACK_MAX_BATCH = 15


def _example(ctx: ExportContext, rows: int | None = None) -> tuple[torch.Tensor]:
    return (torch.from_numpy(ctx.example[:rows].copy()),)


def _dynamic(ctx: ExportContext, maximum: int = MAX_BATCH) -> tuple:
    """Positional, so the spec's input name need not be the name of forward()'s argument."""
    batch = torch.export.Dim("batch", min=1, max=maximum)
    return ({0: batch},)


def _exported_program(ctx: ExportContext, maximum: int = MAX_BATCH):
    return torch.export.export(ctx.model, _example(ctx), dynamic_shapes=_dynamic(ctx, maximum), strict=False)


def export_state_dict(ctx: ExportContext, out: Path) -> Exported:
    torch.save(ctx.model.state_dict(), out / "model.pt")
    return Exported(steps=[ToolStep(tool="torch.save", version=version_of("torch"), detail="state_dict; model code named in 'entry'")])


def _trace(module, example):
    with torch.no_grad():
        return torch.jit.trace(module, example)


def save_torchscript(module, example: tuple, path: Path) -> None:
    """Traces and saves. TorchScript stores the Python call stack of the trace as debug info, so tracing in
    a fresh worker thread keeps the bytes independent of who called the exporter (CLI, pipeline, tests)."""
    with ThreadPoolExecutor(max_workers=1) as worker:
        traced = worker.submit(_trace, module, example).result()
    torch.jit.save(traced, str(path))


TORCHSCRIPT_NOTE = "exported with the TorchScript-based torch.onnx exporter (dynamo=False), deprecated in torch"


def _program(ctx: ExportContext, maximum: int = MAX_BATCH, fixed_batch: int | None = None):
    """`fixed_batch`: traced at that batch with no dynamic shapes, where a symbolic batch is what fails."""
    if fixed_batch:
        return torch.export.export(ctx.model, _example(ctx, fixed_batch), strict=False)
    return _exported_program(ctx, maximum)


def _fixed(fixed_batch: int | None) -> dict:
    """The Exported batch fields of an export at a fixed batch (none for a dynamic one)."""
    return {} if not fixed_batch else dict(dynamic_batch=False, max_batch=fixed_batch, batch_note=(
        f"exported at a fixed batch of {fixed_batch}: the adapter splits larger batches"))


def export_torchscript(ctx: ExportContext, out: Path) -> Exported:
    save_torchscript(ctx.model, _example(ctx), out / "model.pt")
    return Exported(steps=[ToolStep(tool="torch.jit.trace", version=version_of("torch"), detail="TorchScript")])


def export_torch_program(ctx: ExportContext, out: Path, fixed_batch: int | None = None) -> Exported:
    torch.export.save(_program(ctx, fixed_batch=fixed_batch), str(out / "model.pt2"))
    detail = "ExportedProgram, " + (f"batch fixed at {fixed_batch}" if fixed_batch else "batch symbolic")
    return Exported(steps=[ToolStep(tool="torch.export", version=version_of("torch"), detail=detail)], **_fixed(fixed_batch))


def export_aoti(ctx: ExportContext, out: Path, fixed_batch: int | None = None) -> Exported:
    program = _program(ctx, fixed_batch=fixed_batch)
    with contextlib.redirect_stdout(io.StringIO()):
        torch._inductor.aoti_compile_and_package(program, package_path=str(out / "model.pt2"))
    return Exported(
        steps=[
            ToolStep(tool="torch.export", version=version_of("torch")),
            ToolStep(tool="AOTInductor", version=version_of("torch"), detail="C++ shared library, gcc, CPU"),
        ],
        notes=[
            "compiled with -march=native: the shared library runs on CPUs with this machine's instruction set; "
            "build it where it will be served",
            "each package carries a random serialization id, so every export is stored as a new version",
        ],
        **_fixed(fixed_batch),
    )


def export_onnx(ctx: ExportContext, out: Path, dynamo: bool = True, opset: int | None = None) -> Exported:
    """`dynamo=False`: the TorchScript-based exporter (deprecated), its batch axis named in dynamic_axes."""
    path = out / "model.onnx"
    opset = opset or ctx.contract.opset
    inputs, outputs = [s.name for s in ctx.contract.inputs], [s.name for s in ctx.contract.outputs]
    batch = dict(dynamic_shapes=_dynamic(ctx)) if dynamo else dict(dynamic_axes={n: {0: "batch"} for n in inputs + outputs})
    with contextlib.redirect_stdout(io.StringIO()):
        torch.onnx.export(ctx.model, _example(ctx), str(path), input_names=inputs, output_names=outputs,
                          opset_version=opset, external_data=False, dynamo=dynamo, verbose=False, **batch)
    shutil.copyfile(path, ctx.scratch / "torch.onnx")
    ctx.intermediates["torch-onnx"] = ctx.scratch / "torch.onnx"
    ctx.workarounds["torch-onnx"] = [] if dynamo else [TORCHSCRIPT_NOTE]
    tool, detail = ("torch.onnx (dynamo)", f"onnxscript {version_of('onnxscript')}, ") if dynamo else ("torch.onnx (TorchScript)", "")
    return Exported(steps=[ToolStep(tool=tool, version=version_of("torch"), detail=f"{detail}opset {opset}")],
                    notes=list(ctx.workarounds["torch-onnx"]))


def export_executorch(ctx: ExportContext, out: Path, fixed_batch: int | None = None) -> Exported:
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    cap = fixed_batch or EXECUTORCH_XNNPACK_MAX_BATCH
    program = _program(ctx, maximum=cap, fixed_batch=fixed_batch)
    lowered = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()]).to_executorch()
    (out / "model.pte").write_bytes(lowered.buffer)
    batch = _fixed(fixed_batch) or dict(dynamic_batch=True, max_batch=cap, batch_note=(
        f"XNNPACK delegate plans memory for at most {cap} rows; the adapter splits larger batches"))
    return Exported(
        steps=[
            ToolStep(tool="torch.export", version=version_of("torch")),
            ToolStep(tool="ExecuTorch", version=version_of("executorch"), detail="XNNPACK delegate"),
        ],
        **batch,
    )

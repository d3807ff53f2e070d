"""ONNX -> TensorFlow (SavedModel + TFLite) with onnx2tf: PyTorch into TensorFlow's deployment world.

onnx2tf rewrites its input .onnx in place, so it always gets a copy. It turns layouts channels-last
inside the graph; `keep_shape_absolutely_input_names` keeps the contract's [N, 8, 8] input as it is
(otherwise a 3-D input would be read as NCW and transposed).
"""

from __future__ import annotations

import contextlib
import io
import shutil
from pathlib import Path

from crossdeploy.errors import ExportError
from crossdeploy.export.repository import ToolStep
from crossdeploy.versions import version_of

from ..context import ExportContext, Exported

SAVEDMODEL_FILES = ("saved_model.pb", "variables", "assets")  # not fingerprint.pb: a random uuid per save


def _converted(ctx: ExportContext, source: str) -> Path:
    """Runs onnx2tf once per source ONNX; both the SavedModel and the TFLite pathway reuse the result."""
    key = f"onnx2tf:{source}"
    if key in ctx.intermediates:
        return ctx.intermediates[key]
    import onnx2tf

    onnx_path = ctx.intermediates.get(source)
    if onnx_path is None:
        raise ExportError(source, "its ONNX file must be exported before onnx2tf can convert it")
    work = ctx.scratch / f"onnx2tf-{source}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    copy = work / "input.onnx"
    shutil.copyfile(onnx_path, copy)
    with contextlib.redirect_stdout(io.StringIO()):
        onnx2tf.convert(
            input_onnx_file_path=str(copy), output_folder_path=str(work / "out"), non_verbose=True,
            keep_shape_absolutely_input_names=[s.name for s in ctx.spec.inputs],
        )
    ctx.intermediates[key] = work / "out"
    return work / "out"


def _steps(ctx: ExportContext, target: str) -> list[ToolStep]:
    return [
        ToolStep(tool="torch.onnx (dynamo)", version=version_of("torch"), detail=f"opset {ctx.spec.opset}"),
        ToolStep(tool="onnx2tf", version=version_of("onnx2tf"), detail="channels-last inside, input kept [N, 8, 8]"),
        ToolStep(tool=target, version=version_of("tensorflow")),
    ]


def export_savedmodel_via_onnx(ctx: ExportContext, out: Path, source: str = "torch-onnx") -> Exported:
    converted = _converted(ctx, source)
    target = out / "model.savedmodel"
    target.mkdir()
    for name in SAVEDMODEL_FILES:
        item = converted / name
        if item.is_dir():
            shutil.copytree(item, target / name)
        elif item.is_file():
            shutil.copyfile(item, target / name)
    return Exported(steps=_steps(ctx, "SavedModel"))


def export_tflite_via_onnx(ctx: ExportContext, out: Path, source: str = "torch-onnx") -> Exported:
    converted = _converted(ctx, source)
    found = sorted(converted.glob("*_float32.tflite"))
    if not found:
        raise ExportError(source, f"onnx2tf wrote no *_float32.tflite in {converted}")
    shutil.copyfile(found[0], out / "model.tflite")
    return Exported(steps=_steps(ctx, "TFLite (fp32)"))

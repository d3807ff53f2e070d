"""Keras -> ONNX with tf2onnx, from the same named tf.function the SavedModel serves."""

from __future__ import annotations

import shutil
from pathlib import Path

from crossdeploy.export.repository import ToolStep
from crossdeploy.versions import version_of

from ..context import ExportContext, Exported
from ..keras_exporters import serving_function

# tf2onnx 1.17 knows opsets up to 18; the digits graph needs nothing newer than 17.
TF2ONNX_OPSET = 17


def export_onnx_from_keras(ctx: ExportContext, out: Path) -> Exported:
    import tf2onnx

    serve, signature = serving_function(ctx)
    path = out / "model.onnx"
    tf2onnx.convert.from_function(serve, input_signature=signature, opset=TF2ONNX_OPSET, output_path=str(path))
    shutil.copyfile(path, ctx.scratch / "keras.onnx")
    ctx.intermediates["keras-onnx"] = ctx.scratch / "keras.onnx"
    return Exported(steps=[ToolStep(tool="tf2onnx", version=version_of("tf2onnx"), detail=f"opset {TF2ONNX_OPSET}")])

"""Keras -> ONNX with tf2onnx, from the same named tf.function the SavedModel serves."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from crossdeploy.export.repository import ToolStep
from crossdeploy.versions import version_of

from ..context import ExportContext, Exported
from ..keras_exporters import serving_function

# tf2onnx 1.17 knows opsets up to 18; the digits graph needs nothing newer than 17.
TF2ONNX_OPSET = 17


GENERATED = re.compile(r"^(.*)__\d+(:\d+)?$")


def canonical_names(model):
    """Renumbers tf2onnx's generated `name__N` suffixes by order of appearance.

    tf2onnx draws N from a counter whose order depends on Python's per-process hash seed, so the same
    graph would get different bytes on every run and the repository would store a new version each time.
    """
    mapping: dict[str, str] = {}

    def rename(name: str) -> str:
        match = GENERATED.match(name)
        if not match:
            return name
        if name not in mapping:
            mapping[name] = f"{match.group(1)}__{len(mapping)}{match.group(2) or ''}"
        return mapping[name]

    graph = model.graph
    for initializer in graph.initializer:
        initializer.name = rename(initializer.name)
    for node in graph.node:
        node.name = rename(node.name)
        node.input[:] = [rename(n) for n in node.input]
        node.output[:] = [rename(n) for n in node.output]
    for info in graph.value_info:
        info.name = rename(info.name)
    return model


def export_onnx_from_keras(ctx: ExportContext, out: Path) -> Exported:
    import onnx
    import tf2onnx

    serve, signature = serving_function(ctx)
    path = out / "model.onnx"
    model, _ = tf2onnx.convert.from_function(serve, input_signature=signature, opset=TF2ONNX_OPSET)
    onnx.save(canonical_names(model), str(path))
    shutil.copyfile(path, ctx.scratch / "keras.onnx")
    ctx.intermediates["keras-onnx"] = ctx.scratch / "keras.onnx"
    return Exported(steps=[ToolStep(tool="tf2onnx", version=version_of("tf2onnx"), detail=f"opset {TF2ONNX_OPSET}")])

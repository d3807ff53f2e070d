"""Keras -> ONNX with tf2onnx, from the same named tf.function the SavedModel serves.

tf2onnx has no handler for TensorFlow's Erfc (Keras' exact GELU is 0.5·x·erfc(−x/√2)); it logs the op as
unsupported and still writes a graph onnxruntime refuses. The fix goes through tf2onnx's own extension point,
`custom_op_handlers`: Erfc(x) becomes 1 − Erf(x), and the variant's notes say so. Any op tf2onnx leaves behind
fails the export with onnx's checker message instead of producing an unloadable file.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from crossdeploy.repository import ToolStep
from crossdeploy.versions import version_of

from ..context import ExportContext, Exported
from ..keras_exporters import serving_function, unrolled

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


ERFC_NOTE = ("tf2onnx has no converter for TensorFlow's Erfc (exact GELU); applied through its custom_op_handlers: "
             "Erfc(x) = 1 - Erf(x)")


def _erfc_handler(used: list[str]):
    def handler(graph, node, name, args):
        import numpy as np
        from tf2onnx import utils

        node.type = "Erf"
        one = graph.make_const(utils.make_name(f"{node.name}_one"), np.array(1.0, np.float32))
        negated = graph.insert_new_node_on_output("Neg", node.output[0], name=utils.make_name(f"{node.name}_neg"))
        graph.insert_new_node_on_output("Add", negated.output[0], inputs=[negated.output[0], one.output[0]],
                                        name=utils.make_name(f"{node.name}_one_minus"))
        used.append(node.name)
        return node

    return handler


def export_onnx_from_keras(ctx: ExportContext, out: Path, unroll: bool = False, opset: int | None = None) -> Exported:
    """`unroll`: the Keras RNN layers rebuilt unrolled (see keras_exporters.unrolled); `opset`: another than 17."""
    import onnx
    import tf2onnx

    from crossdeploy.errors import ExportError

    opset = opset or TF2ONNX_OPSET
    serve, signature = serving_function(ctx, unrolled(ctx.model) if unroll else None)
    path = out / "model.onnx"
    rewritten: list[str] = []
    model, _ = tf2onnx.convert.from_function(serve, input_signature=signature, opset=opset,
                                             custom_op_handlers={"Erfc": (_erfc_handler(rewritten), [])})
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        left = sorted({n.op_type for n in model.graph.node if n.domain in ("", "ai.onnx") and not onnx.defs.has(n.op_type)})
        raise ExportError("keras-onnx", f"tf2onnx could not convert op(s) {', '.join(left) or '?'}: "
                                        f"{str(exc).strip().splitlines()[0]}") from exc
    onnx.save(canonical_names(model), str(path))
    shutil.copyfile(path, ctx.scratch / "keras.onnx")
    ctx.intermediates["keras-onnx"] = ctx.scratch / "keras.onnx"
    ctx.workarounds["keras-onnx"] = [f"{ERFC_NOTE} ({len(rewritten)} node(s))"] if rewritten else []
    detail = f"opset {opset}" + (", Keras RNN unrolled" if unroll else "")
    return Exported(steps=[ToolStep(tool="tf2onnx", version=version_of("tf2onnx"), detail=detail)],
                    notes=list(ctx.workarounds["keras-onnx"]))

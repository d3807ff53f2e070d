"""The Keras -> ONNX hop (tf2onnx): every Keras layer's output matched to the ONNX node outputs it became.

Keras side: the keras-eager variant's model, built by its runtime adapter, rewired as a second functional model
whose outputs are every layer's output (the same layers, so the same weights). ONNX side: every node output, as
for the torch hop (diverge_capture.onnx_all_outputs).

tf2onnx keeps the TF op names in the ONNX tensor names (`digits_cnn/conv2d/BiasAdd`), so a node's scope is the
first path component that names a Keras layer. The *output* tensor's name wins over the node's: when tf2onnx folds
a BatchNormalization into the Conv before it, the Conv node keeps the conv's name but writes the batch norm's
tensor (`.../batch_normalization/FusedBatchNormV3:0`), so the node holds the batch norm's output and the Conv2D is
listed as fused. The layout ops tf2onnx inserts (names ending `__<n>`) belong to no layer. Keras tensors are
channels-last and tf2onnx's convolutions channels-first: Keras 4-D outputs are compared as NCHW.

Then, for keras-torchscript, the ONNX -> TorchScript hop (onnx2torch): the ONNX node outputs are the reference,
and onnx2torch's submodules, named after the nodes they converted, are matched to them by name.
"""

from __future__ import annotations

import re

import numpy as np

from .diverge_align import Hop, align
from .diverge_capture import OnnxCapture, TorchPoint, onnx_all_outputs

HOP = "keras -> ONNX"
LABELS = ("Keras layer", "ONNX node")
INSERTED = re.compile(r"__\d+(:\d+)?$")  # tf2onnx's own Transpose/Reshape for the layout change
# Keras layers that return their input at inference: tf2onnx emits no node for them
IDENTITY = {"Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "GaussianNoise",
            "GaussianDropout", "AlphaDropout", "ActivityRegularization"}
LAYOUT_LAYERS = {"Reshape", "Permute"}  # what tf2onnx may merge with the Transpose it inserts for NCHW
# the ONNX ops a Keras layer's output can come out of, for the order fallback (names stripped)
KERAS_OPS = {
    "Conv2D": {"Conv"}, "DepthwiseConv2D": {"Conv"}, "BatchNormalization": {"BatchNormalization", "Conv"},
    "ReLU": {"Relu", "Clip", "Conv"}, "MaxPooling2D": {"MaxPool"}, "AveragePooling2D": {"AveragePool"},
    "GlobalAveragePooling2D": {"GlobalAveragePool", "ReduceMean"}, "Flatten": {"Flatten", "Reshape"},
    "Reshape": {"Reshape", "Transpose"}, "Softmax": {"Softmax"},
}


def keras_layer_outputs(repository, reference: str, samples: np.ndarray, threads: int = 2) -> list[TorchPoint]:
    """Every layer's output (the first, for a layer with several), in the functional model's layer order, 4-D
    ones turned channels-first to meet tf2onnx's layout."""
    from crossdeploy.runtimes import open_runtime
    from crossdeploy.runtimes.introspect_keras import keras_layer_outputs as capture

    points = []
    for layer in capture(open_runtime(repository, reference, threads=threads), samples):
        array = layer.value.transpose(0, 3, 1, 2) if layer.value.ndim == 4 else layer.value
        points.append(TorchPoint(layer.name, layer.kind, np.ascontiguousarray(array), layer.kind in IDENTITY,
                                 layer.output_op))
    return points


def _scope(name: str, layers: set[str]) -> str | None:
    return next((part for part in name.split("/") if part.split(":")[0] in layers), None)


def rescope(capture: OnnxCapture, layers: set[str]) -> OnnxCapture:
    """Gives each ONNX point the Keras layer its tensor came from (see the module's docstring)."""
    for point in capture.points:
        if INSERTED.search(point.output) or INSERTED.search(point.node):
            point.scope = None
            continue
        own, written = _scope(point.node, layers), _scope(point.output, layers)
        point.scope = written or own
        if own and written and own != written:
            point.rule = f"tf2onnx's fold of {own} into {written}"
    return capture


def is_output_op(tensor: str, op: str) -> bool:
    name = tensor.split(":")[0]
    return name == op or name.endswith("/" + op)


def keep_output_ops(capture: OnnxCapture, layers: list[TorchPoint]) -> dict[str, list[str]]:
    """Of a layer's nodes, only one that writes the layer's output op (`dense/BiasAdd`) holds its output. A layer
    none of whose nodes writes it (tf2onnx folded the transformer's first Dense bias into the position embedding's
    Add: `dense/Tensordot` is a matmul without its bias) keeps no node; its nodes are returned by layer."""
    unheld = {}
    for layer in layers:
        own = [p for p in capture.points if p.scope == layer.module]
        if not layer.output_op or not own:
            continue
        for point in own:  # by its tensor's name, or by its own (tf2onnx names the graph output after the contract)
            if not (is_output_op(point.output, layer.output_op) or is_output_op(point.node, layer.output_op)):
                point.scope = None
        if not any(p.scope == layer.module for p in own):
            unheld[layer.module] = [p.node for p in own]
    return unheld


def keras_hop(repository, reference: str, onnx_variant: str, samples: np.ndarray, tolerance) -> tuple[Hop, OnnxCapture, int]:
    """The hop, the ONNX capture (for a later hop to start from) and how many Keras layers were read."""
    layers = keras_layer_outputs(repository, reference, samples)
    capture = rescope(onnx_all_outputs(repository, onnx_variant, samples), {p.module for p in layers})
    unheld = keep_output_ops(capture, layers)
    hop = align(layers, capture, tolerance, HOP, reference, onnx_variant, ops=KERAS_OPS, labels=LABELS)
    output_op = {p.module: p.output_op for p in layers}
    for entry in hop.unmatched:
        if entry["module"] in unheld:
            entry["reason"] = (f"no ONNX tensor is its output op {output_op[entry['module']]}: tf2onnx rewrote its "
                               f"last step (its nodes: {', '.join(unheld[entry['module']])})")
    layout_ops = [p for p in capture.points if p.scope is None and INSERTED.search(p.node)]
    for entry in hop.unmatched:
        if entry["type"] in LAYOUT_LAYERS and layout_ops and not any(p.scope == entry["module"] for p in capture.points):
            entry["reason"] = ("tf2onnx merged it into its own layout change (" + ", ".join(
                f"{p.node} ({p.op_type})" for p in layout_ops) + "), which belongs to no layer")
    channels_last = {p.module for p in layers if p.value.ndim == 4}
    for point in hop.points:
        if point.module in channels_last and not point.layout:
            point.layout = "Keras NHWC compared as NCHW"
    return hop, capture, len(layers)


def onnx2torch_all_outputs(repository, variant: str, samples: np.ndarray, threads: int = 2) -> OnnxCapture:
    """Every submodule's output of the TorchScript file onnx2torch wrote, each submodule named after the ONNX node
    it converted (runtimes/introspect_torch.replay_calls: the scripted forward replayed call by call)."""
    from crossdeploy.runtimes import open_runtime
    from crossdeploy.runtimes.introspect_torch import replay_calls

    from .diverge_capture import OnnxPoint

    calls, attributes = replay_calls(open_runtime(repository, variant, threads=threads), samples, threads)
    points = [OnnxPoint(c.index, c.name, c.kind, c.name, list(c.inputs), c.name, None, c.value) for c in calls]
    return OnnxCapture(points, ["input"], attributes - {p.node for p in points})


def onnx2torch_hop(repository, capture: OnnxCapture, onnx_variant: str, variant: str, samples: np.ndarray,
                   tolerance, name: str) -> Hop:
    """ONNX node outputs (the reference: what onnx2torch was given) against the submodules named after them."""
    from .diverge_tflite import onnx_as_reference

    try:
        target = onnx2torch_all_outputs(repository, variant, samples)
    except ValueError as error:
        return Hop(name, onnx_variant, variant, "cannot be matched", f"{variant}: {error}", labels=["ONNX node", "module"])
    return align(onnx_as_reference(capture), target, tolerance, name, onnx_variant, variant,
                 labels=("ONNX node", "onnx2torch module"))


__all__ = ["HOP", "keras_hop", "keras_layer_outputs", "onnx2torch_all_outputs", "onnx2torch_hop", "rescope"]

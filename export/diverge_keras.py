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
    import tf_keras as keras

    from crossdeploy.runtimes import open_runtime

    runtime = open_runtime(repository, reference, threads=threads).load()
    try:
        model = runtime.model
        layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
        tensors = [layer.output[0] if isinstance(layer.output, (list, tuple)) else layer.output for layer in layers]
        probe = keras.Model(model.inputs, tensors)
        values = probe(np.ascontiguousarray(samples), training=False)
        values = values if isinstance(values, (list, tuple)) else [values]
        points = []
        for layer, value in zip(layers, values):
            array = np.asarray(value)
            if array.ndim == 4:
                array = array.transpose(0, 3, 1, 2)
            kind = type(layer).__name__
            points.append(TorchPoint(layer.name, kind, np.ascontiguousarray(array), kind in IDENTITY))
        return points
    finally:
        runtime.unload()


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


def keras_hop(repository, reference: str, onnx_variant: str, samples: np.ndarray, tolerance) -> tuple[Hop, OnnxCapture, int]:
    """The hop, the ONNX capture (for a later hop to start from) and how many Keras layers were read."""
    layers = keras_layer_outputs(repository, reference, samples)
    capture = rescope(onnx_all_outputs(repository, onnx_variant, samples), {p.module for p in layers})
    hop = align(layers, capture, tolerance, HOP, reference, onnx_variant, ops=KERAS_OPS, labels=LABELS)
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


__all__ = ["HOP", "keras_hop", "keras_layer_outputs", "rescope"]

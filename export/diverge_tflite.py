"""The ONNX -> TFLite hop (onnx2tf): every TFLite op's output kept (`experimental_preserve_all_tensors`), matched
to the ONNX node outputs it was converted from.

onnx2tf names tensors after the TF ops it wrote (`model_1/tf.nn.convolution/convolution`), not after the ONNX
nodes, so the match is by order, shape (channels-last turned back to channels-first) and op: walking back from
the output, each ONNX node takes the last TFLite op before the later node's match that can produce it. A Conv
followed by a Relu is one TFLite CONV_2D with a fused activation: the Relu takes it, and the Conv is listed as
fused. The reference of this hop is ONNX (what onnx2tf was given), not torch.
"""

from __future__ import annotations

import numpy as np

from .diverge_capture import OnnxCapture, OnnxPoint, TorchPoint

# ONNX op -> the TFLite ops its output can come out of (its own, or the op it was fused into)
TFLITE_OPS = {
    "Conv": {"CONV_2D", "DEPTHWISE_CONV_2D"}, "Relu": {"RELU", "CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "ADD"},
    "Gemm": {"FULLY_CONNECTED", "ADD"}, "MatMul": {"FULLY_CONNECTED", "BATCH_MATMUL"}, "Add": {"ADD", "FULLY_CONNECTED"},
    "Mul": {"MUL"}, "Div": {"MUL", "DIV"}, "Sub": {"SUB", "ADD"}, "MaxPool": {"MAX_POOL_2D"},
    "AveragePool": {"AVERAGE_POOL_2D"}, "GlobalAveragePool": {"MEAN", "AVERAGE_POOL_2D"},
    "Reshape": {"RESHAPE"}, "Flatten": {"RESHAPE"}, "Unsqueeze": {"RESHAPE", "EXPAND_DIMS"},
    "Squeeze": {"RESHAPE", "SQUEEZE"}, "Transpose": {"TRANSPOSE"}, "Softmax": {"SOFTMAX"},
    "Sigmoid": {"LOGISTIC"}, "Tanh": {"TANH"}, "Concat": {"CONCATENATION"}, "ReduceMean": {"MEAN"},
}


def onnx_as_reference(capture: OnnxCapture) -> list[TorchPoint]:
    """The ONNX node outputs in the role the torch modules play in the first hop."""
    return [TorchPoint(p.node, p.op_type, p.value) for p in capture.points]


def tflite_all_tensors(repository, variant: str, samples: np.ndarray, threads: int = 2) -> OnnxCapture:
    from crossdeploy.runtimes import open_runtime
    from crossdeploy.runtimes.introspect import tflite_intermediates

    ops, names, values, entry, _ = tflite_intermediates(open_runtime(repository, variant, threads=threads), samples, threads)
    produced = {i for op in ops for i in op["outputs"]}
    points = []
    for op in ops:
        for index in op["outputs"]:
            value = values[index]
            if np.issubdtype(value.dtype, np.floating):
                points.append(OnnxPoint(op["index"], f"{op['op_name']}#{op['index']}",
                                        op["op_name"], names[index], [names[i] for i in op["inputs"] if i >= 0],
                                        None, None, value))
    constants = {names[i] for op in ops for i in op["inputs"] if i >= 0 and i not in produced and i != entry["index"]}
    return OnnxCapture(points, [entry["name"]], constants)

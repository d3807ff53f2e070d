"""The ONNX -> TFLite hop (onnx2tf): every TFLite op's output kept (`experimental_preserve_all_tensors`), matched
to the ONNX node outputs it was converted from.

onnx2tf names tensors after the TF ops it wrote (`model_1/tf.nn.convolution/convolution`), not after the ONNX
nodes, so the match is by order, shape (channels-last turned back to channels-first) and op: walking back from
the output, each ONNX node takes the last TFLite op before the later node's match that can produce it. A Conv
followed by a Relu is one TFLite CONV_2D with a fused activation: the Relu takes it, and the Conv is listed as
fused. The reference of this hop is ONNX (what onnx2tf was given), not torch.
"""

from __future__ import annotations

import warnings

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
    from ai_edge_litert.interpreter import Interpreter

    from crossdeploy.runtimes import open_runtime

    runtime = open_runtime(repository, variant, threads=threads)
    runtime.verify()
    with warnings.catch_warnings():  # "for debugging purposes only": that is what this is
        warnings.simplefilter("ignore", UserWarning)
        interpreter = Interpreter(model_content=runtime.artifact.read_bytes(), num_threads=threads,
                                  experimental_preserve_all_tensors=True)
    entry = interpreter.get_input_details()[0]
    interpreter.resize_tensor_input(entry["index"], list(samples.shape), strict=True)
    interpreter.allocate_tensors()
    interpreter.set_tensor(entry["index"], np.ascontiguousarray(samples, dtype=entry["dtype"]))
    interpreter.invoke()
    names = {d["index"]: d["name"] for d in interpreter.get_tensor_details()}
    ops = interpreter._get_ops_details()  # the only listing of ops with their tensors LiteRT's Python API has
    produced = {i for op in ops for i in op["outputs"]}
    points = []
    for op in ops:
        for index in op["outputs"]:
            value = interpreter.get_tensor(index)
            if np.issubdtype(value.dtype, np.floating):
                points.append(OnnxPoint(op["index"], f"{op['op_name']}#{op['index']}",
                                        op["op_name"], names[index], [names[i] for i in op["inputs"] if i >= 0],
                                        None, None, value.copy()))
    constants = {names[i] for op in ops for i in op["inputs"] if i >= 0 and i not in produced and i != entry["index"]}
    return OnnxCapture(points, [entry["name"]], constants)

"""Hops that end in a TensorFlow artifact: ONNX -> SavedModel (onnx2tf, torch-savedmodel), Keras -> SavedModel
(keras-savedmodel) and Keras -> TFLite fp32 / int8 (keras-tflite, keras-tflite-int8).

SavedModel side: every floating tensor of the frozen serving signature (runtimes/introspect_tf). TFLite side:
every op output, kept by `experimental_preserve_all_tensors` (runtimes/introspect), int8 ones dequantized.

- onnx2tf builds a Keras functional model of TF-op layers named after the TF function it called
  (`model_1/tf.nn.convolution_1/convolution`), not after the ONNX node: the ONNX -> SavedModel hop is matched
  by order, shape and op (walking back from the output, as for its TFLite sibling), NHWC turned back to NCHW.
- The Keras converters keep the layers' name scopes (`digits_cnn/conv2d/BiasAdd`): Keras layers are matched by
  name. TFLite names a fused op's tensor after every TF op it fused, the last one first
  (`digits_cnn/re_lu/Relu;digits_cnn/batch_normalization/FusedBatchNormV3;digits_cnn/conv2d/BiasAdd;…`): the
  tensor is the first one's layer's output, and the other layers are listed as fused into it. The signature's
  output tensor (`StatefulPartitionedCall:0`) carries no layer name: it is the model's last layer's.
"""

from __future__ import annotations

import numpy as np

from crossdeploy.repository import Tolerance

from .diverge_align import Hop, align
from .diverge_capture import OnnxCapture, OnnxPoint, TorchPoint

# ONNX op -> the TF ops its output can come out of in onnx2tf's graph (a Conv or Gemm ends in the Add of its bias)
TF_OPS = {
    "Conv": {"Conv2D", "DepthwiseConv2dNative", "AddV2", "BiasAdd"}, "Relu": {"Relu"},
    "Gemm": {"MatMul", "AddV2", "BiasAdd"}, "MatMul": {"MatMul", "BatchMatMulV2"}, "Add": {"AddV2"},
    "Mul": {"Mul"}, "Div": {"RealDiv", "Mul"}, "Sub": {"Sub"}, "MaxPool": {"MaxPool"}, "AveragePool": {"AvgPool"},
    "GlobalAveragePool": {"Mean", "AvgPool"}, "Reshape": {"Reshape"}, "Flatten": {"Reshape"},
    "Unsqueeze": {"Reshape", "ExpandDims"}, "Squeeze": {"Reshape", "Squeeze"}, "Transpose": {"Transpose"},
    "Softmax": {"Softmax"}, "Sigmoid": {"Sigmoid"}, "Tanh": {"Tanh"}, "Concat": {"ConcatV2"}, "ReduceMean": {"Mean"},
}
INT8_STEPS = 32  # an int8 tensor leaves the tolerance beyond this many of its quantization steps (1/8 of its range)


def savedmodel_capture(repository, variant: str, samples: np.ndarray, threads: int = 2) -> OnnxCapture:
    """The SavedModel's op outputs in the role the ONNX nodes play in the torch -> ONNX hop."""
    from crossdeploy.runtimes import open_runtime
    from crossdeploy.runtimes.introspect_tf import savedmodel_intermediates

    ops, values, constants, entry = savedmodel_intermediates(open_runtime(repository, variant, threads=threads),
                                                             samples, threads)
    points = []
    for index, op in enumerate(ops):
        if op["type"] == "Identity":  # the inlined call's pass-throughs: the same tensor under another name
            continue
        for output in op["outputs"]:
            value = values[output]
            if value.ndim:
                points.append(OnnxPoint(index, op["name"], op["type"], output, op["inputs"], None, None, value))
    return OnnxCapture(points, [entry], constants)


def onnx2tf_savedmodel_hop(repository, capture: OnnxCapture, onnx_variant: str, variant: str, samples: np.ndarray,
                           tolerance: Tolerance, name: str) -> Hop:
    from .diverge_tflite import onnx_as_reference

    return align(onnx_as_reference(capture), savedmodel_capture(repository, variant, samples), tolerance, name,
                 onnx_variant, variant, ops=TF_OPS, labels=("ONNX node", "TF op"))


def _layer(name: str, layers: set[str]) -> str | None:
    return next((part for part in name.split(":")[0].split("/") if part in layers), None)


def keras_savedmodel_hop(repository, reference: str, variant: str, samples: np.ndarray, tolerance: Tolerance,
                         name: str) -> tuple[Hop, int]:
    from .diverge_keras import keras_layer_outputs

    layers = keras_layer_outputs(repository, reference, samples)
    capture = savedmodel_capture(repository, variant, samples)
    names = {p.module for p in layers}
    for point in capture.points:
        point.scope = _layer(point.node, names)
    return align(layers, capture, tolerance, name, reference, variant, labels=("Keras layer", "TF op")), len(layers)


def tflite_capture(repository, variant: str, samples: np.ndarray, layers: list[TorchPoint],
                   threads: int = 2) -> tuple[OnnxCapture, dict[str, float]]:
    """The TFLite op outputs scoped to the Keras layers they hold, and the quantization step of each int8 one."""
    from crossdeploy.runtimes import open_runtime
    from crossdeploy.runtimes.introspect import tflite_intermediates

    ops, names, values, entry, steps = tflite_intermediates(open_runtime(repository, variant, threads=threads),
                                                            samples, threads)
    # the XNNPACK delegate's nodes list the tensors of the ops they took over: the same tensors again
    ops = [op for op in ops if op["op_name"] != "DELEGATE"]
    consumed = {i for op in ops for i in op["inputs"]}
    layer_names = {p.module for p in layers}
    points, step_of = [], {}
    for op in ops:
        for index in op["outputs"]:
            value, tensor = values[index], names[index]
            if not np.issubdtype(value.dtype, np.floating):
                continue
            parts = [_layer(part, layer_names) for part in tensor.split(";")]
            scope = parts[0] if index in consumed or parts[0] else layers[-1].module  # the signature's output
            fused = sorted({p for p in parts[1:] if p and p != scope})
            rule = f"TFLite's fusion of {', '.join(fused)} into {scope}" if fused else None
            inputs = [names[i] for i in op["inputs"] if i >= 0]
            points.append(OnnxPoint(op["index"], f"{op['op_name']}#{op['index']}", op["op_name"], tensor, inputs,
                                    scope, rule, value))
            # a DEQUANTIZE output carries its input's quantization step
            step = steps.get(index, steps.get(op["inputs"][0]) if op["op_name"] == "DEQUANTIZE" else None)
            if step is not None:
                step_of[tensor] = step
    produced = {i for op in ops for i in op["outputs"]}
    constants = {names[i] for op in ops for i in op["inputs"] if i >= 0 and i not in produced and i != entry["index"]}
    return OnnxCapture(points, [entry["name"]], constants), step_of


def keras_tflite_hop(repository, reference: str, variant: str, samples: np.ndarray, tolerance: Tolerance,
                     name: str) -> tuple[Hop, int]:
    """An int8 file's tensors are compared under INT8_STEPS of their own quantization step (the int8 variant's
    tolerance compares no values); a float one's under the variant's tolerance."""
    from .diverge_keras import keras_layer_outputs

    layers = keras_layer_outputs(repository, reference, samples)
    capture, steps = tflite_capture(repository, variant, samples, layers)
    bounds = {tensor: Tolerance(atol=INT8_STEPS * step, rtol=0.0) for tensor, step in steps.items()}
    hop = align(layers, capture, tolerance, name, reference, variant, labels=("Keras layer", "TFLite op"), bounds=bounds)
    return hop, len(layers)


__all__ = ["INT8_STEPS", "TF_OPS", "keras_savedmodel_hop", "keras_tflite_hop", "onnx2tf_savedmodel_hop",
           "savedmodel_capture", "tflite_capture"]

"""Hops that end in a TensorFlow artifact: ONNX -> SavedModel (onnx2tf, torch-savedmodel), Keras -> SavedModel
(keras-savedmodel) and Keras -> TFLite fp32 / int8 (keras-tflite, keras-tflite-int8).

SavedModel side: every floating tensor of the frozen serving signature (runtimes/introspect_tf). TFLite side:
every op output, kept by `experimental_preserve_all_tensors` (runtimes/introspect), int8 ones dequantized.

- onnx2tf builds a Keras functional model of TF-op layers named after the TF function it called
  (`model_1/tf.nn.convolution_1/convolution`), not after the ONNX node: the ONNX -> SavedModel hop is matched
  by order, shape and op (walking back from the output, as for its TFLite sibling), NHWC turned back to NCHW.
- The Keras converters keep the layers' name scopes (`digits_cnn/conv2d/BiasAdd`): Keras layers are matched by
  name: a SavedModel op belongs to the layer its scope names, the last one of the layer's shape holds its output.
  TFLite names a fused op's tensor after every TF op it fused
  (`digits_cnn/re_lu/Relu;digits_cnn/batch_normalization/FusedBatchNormV3;digits_cnn/conv2d/BiasAdd;…`): of the
  layers whose output op (`layer.output.name`) it lists, it holds the last one's output, and the others are listed
  as fused into it. A tensor that lists no layer's output op holds none (`dense/Tensordot`, the matmul whose bias
  add TFLite folded into the next layer's ADD). The signature's output tensor (`StatefulPartitionedCall:0`)
  carries no layer name: it is the model's last layer's.
"""

from __future__ import annotations

import numpy as np

from crossdeploy.repository import Tolerance, quantization_bound

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


def _held(tensor: str, layers: list[TorchPoint]) -> list[str]:
    """The layers whose output op the TFLite tensor's name lists, in the model's order: the op computed them in
    that order and wrote the last one's output (TFLite appends a digit to a name it has seen)."""
    parts = {part.split(":")[0] for part in tensor.split(";")}
    parts |= {part.rstrip("0123456789") for part in parts}
    return [p.module for p in layers if p.output_op and any(part == p.output_op or part.endswith("/" + p.output_op)
                                                            for part in parts)]


def tflite_capture(repository, variant: str, samples: np.ndarray, layers: list[TorchPoint],
                   threads: int = 2) -> tuple[OnnxCapture, dict[str, float], dict[str, str]]:
    """The TFLite op outputs scoped to the Keras layers they hold, the quantization step of each int8 one, and
    the op each fused layer went into."""
    from crossdeploy.runtimes import open_runtime
    from crossdeploy.runtimes.introspect import tflite_intermediates

    ops, names, values, entry, steps = tflite_intermediates(open_runtime(repository, variant, threads=threads),
                                                            samples, threads)
    # the XNNPACK delegate's nodes list the tensors of the ops they took over: the same tensors again
    ops = [op for op in ops if op["op_name"] != "DELEGATE"]
    consumed = {i for op in ops for i in op["inputs"]}
    points, step_of, fused_into = [], {}, {}
    for op in ops:
        for index in op["outputs"]:
            value, tensor = values[index], names[index]
            if not np.issubdtype(value.dtype, np.floating):
                continue
            held = _held(tensor, layers)
            scope = held[-1] if held else None if index in consumed else layers[-1].module  # the signature's output
            fused = held[:-1]
            fused_into.update({layer: f"{op['op_name']}#{op['index']}" for layer in fused})
            rule = f"TFLite's fusion of {', '.join(fused)} into {scope}" if fused else None
            inputs = [names[i] for i in op["inputs"] if i >= 0]
            points.append(OnnxPoint(op["index"], f"{op['op_name']}#{op['index']}", op["op_name"], tensor, inputs,
                                    scope, rule, value))
            # in steps of the coarsest quantization among its own and its inputs' (see diverge_int8); a DEQUANTIZE
            # output has only its input's
            coarsest = [steps[i] for i in [index, *op["inputs"]] if i in steps]
            if coarsest:
                step_of[tensor] = max(coarsest)
    produced = {i for op in ops for i in op["outputs"]}
    constants = {names[i] for op in ops for i in op["inputs"] if i >= 0 and i not in produced and i != entry["index"]}
    return OnnxCapture(points, [entry["name"]], constants), step_of, fused_into


def keras_tflite_hop(repository, reference: str, variant: str, samples: np.ndarray, tolerance: Tolerance,
                     name: str) -> tuple[Hop, int]:
    """An int8 file's tensors are compared under INT8_STEPS quantization steps, of the coarsest quantization among
    their own and their inputs' (the int8 variant's tolerance compares no values); a float one's under the variant's
    tolerance."""
    from .diverge_keras import keras_layer_outputs

    layers = keras_layer_outputs(repository, reference, samples)
    capture, steps, fused_into = tflite_capture(repository, variant, samples, layers)
    bounds = {tensor: quantization_bound(step) for tensor, step in steps.items()}
    hop = align(layers, capture, tolerance, name, reference, variant, labels=("Keras layer", "TFLite op"), bounds=bounds)
    output_op = {p.module: p.output_op for p in layers}
    for entry in hop.unmatched:
        layer = entry["module"]
        if layer in fused_into:
            entry["reason"] = f"TFLite fused it into {fused_into[layer]}, which writes a later layer's output"
        elif not entry["reason"].startswith("returns its input"):
            named = [p.node for p in capture.points if f"/{layer}/" in p.output]
            entry["reason"] = (f"no TFLite tensor is its output op {output_op[layer]}: the converter rewrote the "
                               f"layer's last step" + (f" (its ops: {', '.join(named)})" if named else ""))
    return hop, len(layers)


__all__ = ["TF_OPS", "keras_savedmodel_hop", "keras_tflite_hop", "onnx2tf_savedmodel_hop",
           "savedmodel_capture", "tflite_capture"]

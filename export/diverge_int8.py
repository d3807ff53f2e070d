"""The fp32 ONNX -> int8 QDQ ONNX hop (torch-onnx-int8: onnxruntime's `quantize_static` of the torch-onnx file).

The quantizer keeps the float nodes and their names and puts a QuantizeLinear -> DequantizeLinear pair on each
tensor between them: the value the next node sees is the DequantizeLinear's output, so that is what a tensor is
compared by. Every fp32 node is matched **by the name of the tensor it writes**. Where the quantizer dropped a
node (a Relu after a Conv or Gemm: the QuantizeLinear's clamp to the calibrated range, which starts at 0, does
its work), the Conv writes the Relu's tensor: the int8 point is the Conv's, the fp32 Conv is listed as fused.

The int8 variant's own tolerance compares no values (agreement and accuracy decide), so a quantized tensor
leaves the tolerance here when it is more than INT8_STEPS quantization steps from the fp32 one, in steps of the
coarsest quantization among its own (its QuantizeLinear's scale) and its inputs': an op's output carries its
inputs' error, and a finely quantized output (Erf's, Softmax's) of coarsely quantized inputs would otherwise be
held to a step its inputs never had. A tensor the quantizer left in float takes its inputs' steps; one with no
quantized tensor upstream keeps the fp32 file's tolerance.

Caveat: with every tensor marked as a graph output, onnxruntime cannot fuse the Q/DQ pairs into its integer
kernels (QLinearConv, …), so the values are the QDQ graph's own semantics (dequantize, float op, quantize),
which the fused kernels approximate to within a step's rounding.
"""

from __future__ import annotations

import numpy as np

from crossdeploy.repository import Tolerance, quantization_bound

from .diverge_align import Hop, align
from .diverge_capture import OnnxCapture, OnnxPoint

QDQ = {"QuantizeLinear", "DequantizeLinear"}


def _dropped(fp32: OnnxPoint, node) -> str | None:
    if fp32.op_type == node.op_type:
        return None
    if fp32.op_type == "Relu":
        return (f"onnxruntime's quantizer, which dropped {fp32.node} (Relu): the QuantizeLinear after "
                f"{node.name} clamps to a range that starts at 0")
    return f"onnxruntime's quantizer, which left {node.name} ({node.op_type}) writing {fp32.node}'s tensor"


def qdq_capture(repository, variant: str, fp32: OnnxCapture, samples: np.ndarray) -> tuple[OnnxCapture, dict[str, Tolerance]]:
    """The int8 file's float nodes, each with the value its consumers see and the fp32 node it stands for."""
    import onnx
    from onnx import numpy_helper

    from crossdeploy.runtimes import open_runtime

    from .diverge_capture import onnx_all_outputs

    raw = onnx_all_outputs(repository, variant, samples)
    values = {p.output: p.value for p in raw.points}
    runtime = open_runtime(repository, variant)
    graph = onnx.load(str(runtime.artifact)).graph  # onnx_all_outputs verified its sha256
    initializers = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    quantized_by = {n.input[0]: n for n in graph.node if n.op_type == "QuantizeLinear"}
    dequantized_by = {n.input[0]: n for n in graph.node if n.op_type == "DequantizeLinear"}
    # what a node reads: the tensor a DequantizeLinear gives back, or the weight it dequantizes
    source_of, weights = {}, set()
    for node in graph.node:
        if node.op_type == "DequantizeLinear":
            if node.input[0] in initializers:
                weights.add(node.output[0])
            else:
                quantize = next((q for q in graph.node if q.op_type == "QuantizeLinear" and q.output[0] == node.input[0]), None)
                if quantize is not None:
                    source_of[node.output[0]] = quantize.input[0]
    fp32_writer = {p.output: p for p in fp32.points}
    points, bounds, steps = [], {}, {}
    for index, node in enumerate(graph.node):
        if node.op_type in QDQ:
            continue
        tensor = node.output[0]
        quantize = quantized_by.get(tensor)
        seen = dequantized_by.get(quantize.output[0]).output[0] if quantize is not None and quantize.output[0] in dequantized_by else tensor
        value = values.get(seen)
        if value is None:
            continue
        writer = fp32_writer.get(tensor) or fp32_writer.get(seen)
        inputs = [source_of.get(i, i) for i in node.input if i]
        points.append(OnnxPoint(index, node.name, node.op_type, tensor, inputs, writer.node if writer else None,
                                _dropped(writer, node) if writer else None, value))
        # an op's output carries its inputs' error: its bound is in steps of the coarsest quantization among its own
        # and its inputs' (a tensor the quantizer left in float has only its inputs')
        coarsest = [steps[i] for i in inputs if i in steps]
        if quantize is not None:
            coarsest.append(float(np.max(initializers[quantize.input[1]])))
        step = max(coarsest, default=None)
        if step is not None:
            steps[tensor] = step
            bounds[tensor] = quantization_bound(step)
    return OnnxCapture(points, raw.graph_inputs, raw.initializers | weights), bounds


def int8_hop(repository, fp32: OnnxCapture, onnx_variant: str, variant: str, samples: np.ndarray,
             tolerance: Tolerance, name: str) -> Hop:
    """fp32 node outputs (the reference: what the quantizer was given) against the int8 file's; `tolerance`:
    the fp32 file's, for the tensors left in float."""
    from .diverge_tflite import onnx_as_reference

    target, bounds = qdq_capture(repository, variant, fp32, samples)
    return align(onnx_as_reference(fp32), target, tolerance, name, onnx_variant, variant,
                 labels=("fp32 ONNX node", "int8 ONNX node"), bounds=bounds)


__all__ = ["int8_hop", "qdq_capture"]

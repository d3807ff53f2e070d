"""Torch leaf-module outputs matched to ONNX node outputs, compared under the variant's tolerance.

Matching: by name where the exporter kept the module path (a node's recorded scope equals the module's path;
of several nodes in one module, the last whose output has the module's shape is the module's output), else by
topological order and shape. A channels-last tensor is turned back to channels-first before comparing. A module
with no node of its own (the exporter fused it into its neighbour, e.g. a Conv folded into the next
BatchNorm) is listed as unmatched, with the reason.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from crossdeploy.repository import Tolerance

from .diverge_capture import OnnxCapture, OnnxPoint, TorchPoint
from .parity import REL_FLOOR


@dataclass
class Point:
    depth: int  # position among the matched points, source order
    module: str
    module_type: str
    node: str
    op_type: str
    output: str
    shape: list[int]
    matched_by: str  # "name" | "order+shape"
    layout: str  # "" or the transpose undone ("NHWC->NCHW")
    max_abs: float | None  # None: non-finite
    max_rel: float | None
    tolerance_ratio: float | None  # max of |a-b| / (atol + rtol*|b|): above 1 leaves the tolerance; None: non-finite
    breaches: int
    size: int
    inputs: list[dict] = field(default_factory=list)  # each input: name, what it is, its error when known
    atol: float | None = None  # the point's own bound when it has one (an int8 tensor's), else the hop's tolerance


@dataclass
class Hop:
    name: str  # "torch -> ONNX"
    source: str
    target: str
    status: str  # "within tolerance" | "diverges" | "cannot be matched" | "not diagnosed yet"
    reason: str = ""
    points: list[Point] = field(default_factory=list)
    unmatched: list[dict] = field(default_factory=list)
    first_divergence: int | None = None  # index into points
    labels: list[str] = field(default_factory=lambda: ["module", "ONNX node"])  # what `module` and `node` name

    def as_dict(self) -> dict:
        return asdict(self)


def _to_reference_layout(value: np.ndarray, shape: tuple) -> tuple[np.ndarray, str] | None:
    if value.shape == shape:
        return value, ""
    if value.ndim == 4 and value.transpose(0, 3, 1, 2).shape == shape:
        return value.transpose(0, 3, 1, 2), "NHWC->NCHW"
    if value.ndim == 3 and value.transpose(0, 2, 1).shape == shape and shape[1] != shape[2]:
        return value.transpose(0, 2, 1), "NWC->NCW"
    return None


def _by_name(torch_points: list[TorchPoint], nodes: list[OnnxPoint]) -> dict[str, tuple[OnnxPoint, np.ndarray, str]]:
    found = {}
    for point in torch_points:
        candidates = [n for n in nodes if n.scope == point.module]
        for node in reversed(candidates):
            converted = _to_reference_layout(node.value, point.value.shape)
            if converted is not None:
                found[point.module] = (node, *converted)
                break
    return found


# the ONNX ops a module's output can come out of (its own op, or the op it was fused into); a module type not
# listed accepts any op of its shape
OPS = {
    "Conv1d": {"Conv"}, "Conv2d": {"Conv"}, "ConvTranspose2d": {"ConvTranspose"},
    "BatchNorm1d": {"BatchNormalization", "Conv", "Gemm", "Add", "Mul"},
    "BatchNorm2d": {"BatchNormalization", "Conv", "Add", "Mul"},
    "Linear": {"Gemm", "MatMul", "Add"}, "ReLU": {"Relu", "Clip", "Conv", "Gemm"}, "GELU": {"Gelu", "Mul"},
    "MaxPool2d": {"MaxPool"}, "AvgPool2d": {"AveragePool"}, "AdaptiveAvgPool2d": {"GlobalAveragePool", "AveragePool"},
    "Flatten": {"Flatten", "Reshape"}, "LayerNorm": {"LayerNormalization", "Add"}, "Softmax": {"Softmax"},
    "Sigmoid": {"Sigmoid"}, "Tanh": {"Tanh"}, "MultiheadAttention": {"Add", "Gemm", "MatMul", "Transpose"},
}


ELEMENTWISE = {"Add", "Mul", "Sub", "Div"}
# an elementwise op ends a known module only as its bias/affine step, after the op that did the module's work
AFTER = {"Linear": {"MatMul"}, "MultiheadAttention": {"MatMul"}, "BatchNorm1d": {"Mul", "Sub", "Div"},
         "BatchNorm2d": {"Mul", "Sub", "Div"}, "LayerNorm": {"Mul", "Div"}, "GELU": {"Erf", "Add", "Tanh"}}


def _fits(point: TorchPoint, node: OnnxPoint, constants: set[str], producers: dict[str, str],
          ops: dict[str, set[str]]) -> tuple[np.ndarray, str] | None:
    if point.kind in ops:
        if node.op_type not in ops[point.kind]:
            return None
        # a known module's output may be an Add of its bias, never of two activations (a residual connection)
        # nor one step inside a decomposed function (GELU's "+ 1")
        if node.op_type in ELEMENTWISE and not (any(i in constants for i in node.inputs) and any(
                producers.get(i) in AFTER.get(point.kind, ()) for i in node.inputs)):
            return None
    return _to_reference_layout(node.value, point.value.shape)


def _by_order(torch_points: list[TorchPoint], capture: OnnxCapture,
              ops: dict[str, set[str]]) -> dict[str, tuple[OnnxPoint, np.ndarray, str]]:
    """Monotone, from the output back: each module takes the last node before the later module's match whose op
    can produce it and whose output has its shape. Backwards, because a fused pair's one node holds the second
    module's output (Conv folded into BatchNorm: the node is the BatchNorm's, the Conv gets none)."""
    nodes = capture.points
    constants = capture.initializers | {n.output for n in nodes if n.op_type == "Constant"}
    producers = {n.output: n.op_type for n in nodes}
    found, end = {}, len(nodes)
    for point in reversed(torch_points):
        if point.identity:
            continue
        for position in range(end - 1, -1, -1):
            converted = _fits(point, nodes[position], constants, producers, ops)
            if converted is not None:
                found[point.module] = (nodes[position], *converted)
                end = position
                break
    return found


def _why_unmatched(point: TorchPoint, nodes: list[OnnxPoint], next_node: OnnxPoint | None, label: str = "ONNX node") -> str:
    if point.identity:
        return "returns its input unchanged at inference: the exporter emits no node for it"
    own = [n for n in nodes if n.scope == point.module]
    if own:
        shapes = sorted({str(list(n.value.shape)) for n in own})
        return f"its {label}s' outputs have shapes {', '.join(shapes)}, the module's {list(point.value.shape)}"
    if next_node is not None and next_node.rule:
        return f"no {label} of its own: fused into {next_node.node} ({next_node.op_type}) by the rewrite rule {next_node.rule}"
    if next_node is not None and next_node.scope is None:
        return (f"no node of its shape and op between its neighbours' matches (fused into {next_node.node} "
                f"({next_node.op_type}), or computed by ops with no counterpart here)")
    return f"no {label} carries its name"


def compare(reference: np.ndarray, candidate: np.ndarray, tolerance: Tolerance) -> dict:
    a, b = candidate.astype(np.float64), reference.astype(np.float64)
    diff = np.abs(a - b)
    bound = tolerance.bound(b)
    ratio = float(np.max(np.where(np.isfinite(diff), diff, np.inf) / bound)) if diff.size else 0.0
    # JSON has no infinity: a non-finite value anywhere is a breach (counted) with no ratio to draw
    ratio = ratio if np.isfinite(ratio) else None
    max_abs = float(diff.max()) if diff.size else 0.0
    max_rel = float((diff / np.maximum(np.abs(b), REL_FLOOR)).max()) if diff.size else 0.0
    return {"max_abs": max_abs if np.isfinite(max_abs) else None, "max_rel": max_rel if np.isfinite(max_rel) else None,
            "tolerance_ratio": ratio, "breaches": tolerance.breaches(candidate, reference) or 0, "size": int(diff.size)}


def align(torch_points: list[TorchPoint], capture: OnnxCapture, tolerance: Tolerance, name: str, source: str,
          target: str, ops: dict[str, set[str]] | None = None, labels: tuple[str, str] = ("module", "ONNX node"),
          bounds: dict[str, Tolerance] | None = None) -> Hop:
    """`ops`: which target ops may hold each source kind's output (default: torch module -> ONNX). `bounds`: the
    tolerance of the target tensors (by name) that have their own (an int8 tensor's quantization step)."""
    nodes = capture.points
    named = _by_name(torch_points, nodes)
    method = "name"
    if not named:  # the exporter kept no module path: fall back on the order of computation and shapes
        named, method = _by_order(torch_points, capture, OPS if ops is None else ops), "order+shape"
    if not named:
        return Hop(name, source, target, "cannot be matched", f"no {labels[0]} output matches a {labels[1]} output "
                   "by name, or by order, shape and op", labels=list(labels))
    order = sorted(named.items(), key=lambda item: item[1][0].index)
    points: list[Point] = []
    by_output: dict[str, Point] = {}
    torch_by_module = {p.module: p for p in torch_points}
    for depth, (module, (node, value, layout)) in enumerate(order):
        bound = (bounds or {}).get(node.output)
        stats = compare(torch_by_module[module].value, value, bound or tolerance)
        point = Point(depth, module, torch_by_module[module].kind,
                      node.node, node.op_type, node.output, list(value.shape), method, layout, **stats)
        point.atol = bound.atol if bound is not None else None
        point.inputs = [_input_error(i, capture, by_output) for i in node.inputs]
        by_output[node.output] = point
        points.append(point)
    unmatched = []
    for point in torch_points:
        if point.module not in named:
            later = [named[p.module][0] for p in torch_points[torch_points.index(point) + 1:] if p.module in named]
            unmatched.append({"module": point.module, "type": point.kind,
                              "reason": _why_unmatched(point, nodes, later[0] if later else None, labels[1])})
    first = next((p.depth for p in points if p.breaches), None)
    status, reason = ("diverges" if first is not None else "within tolerance"), ""
    if method == "order+shape" and first is not None and not points[-1].breaches:
        # an error that appears and then vanishes before the output is far likelier a misalignment than a fault:
        # matched by position alone, such a divergence is not reported as one
        status, reason = "cannot be matched", (
            f"matched by order, shape and op only, and the points part at {points[first].module} -> "
            f"{points[first].node} while the last point agrees: the alignment cannot be trusted here")
        first = None
    return Hop(name, source, target, status, reason, points=points, unmatched=unmatched, first_divergence=first,
               labels=list(labels))


def _input_error(name: str, capture: OnnxCapture, by_output: dict[str, Point]) -> dict:
    if name in capture.graph_inputs:
        return {"name": name, "is": "model input", "max_abs": 0.0}
    if name in capture.initializers:
        return {"name": name, "is": "a weight (initializer)"}
    if name in by_output:
        point = by_output[name]
        return {"name": name, "is": f"output of {point.module}", "max_abs": point.max_abs,
                "tolerance_ratio": point.tolerance_ratio}
    producer = next((p for p in capture.points if p.output == name), None)
    if producer is None:
        return {"name": name, "is": "constant"}
    return {"name": name, "is": f"output of {producer.node} ({producer.op_type}), no torch module of its own"}

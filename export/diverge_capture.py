"""Intermediate tensors of both ends of the torch -> ONNX hop, on the same samples.

PyTorch: a forward hook on every leaf module of the eager variant's model (built by its runtime adapter from the
repository, so the weights are the ones the chain started from; runtimes/introspect_torch). ONNX: as Polygraphy's `--onnx-outputs mark all`
does, an in-memory copy of the artifact with every node output added to the graph outputs, run by onnxruntime.
The artifact's bytes are checked against the config's sha256 by the adapter before anything reads them.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field

import numpy as np


@dataclass
class TorchPoint:
    module: str  # the module path ("features.4"), as named_modules gives it
    kind: str  # the module's class name
    value: np.ndarray
    identity: bool = False  # returned its input unchanged (eval-mode Dropout, Identity): exporters drop it
    output_op: str | None = None  # a Keras layer's output op in the model's graph ("dense/BiasAdd")


@dataclass
class OnnxPoint:
    index: int  # the node's position in the graph (ONNX keeps nodes topologically sorted)
    node: str
    op_type: str
    output: str
    inputs: list[str]
    scope: str | None  # the torch module path the exporter recorded for the node, None when it recorded none
    rule: str | None  # the exporter's rewrite rule that produced the node (a fusion), if any
    value: np.ndarray | None = None


@dataclass
class OnnxCapture:
    points: list[OnnxPoint]
    graph_inputs: list[str]
    initializers: set[str] = field(default_factory=set)


def torch_leaf_outputs(repository, reference: str, samples: np.ndarray, threads: int = 2) -> list[TorchPoint]:
    """The first output of every module that is a leaf of the call tree, in call order: a leaf module, or one
    whose submodules never run (nn.MultiheadAttention computes through its out_proj's weights, not its forward)."""
    from crossdeploy.runtimes import open_runtime
    from crossdeploy.runtimes.introspect_torch import eager_leaf_outputs

    captured = eager_leaf_outputs(open_runtime(repository, reference, threads=threads), samples, threads)
    # hooks fire innermost first: order by the first call is by completion, which is the data's order for leaves
    return [TorchPoint(c.name, c.kind, c.value, c.same_as_input) for c in captured
            if not any(other.name.startswith(c.name + ".") for other in captured)]


def node_scope(node) -> str | None:
    """The module path of the torch module a node came from: the dynamo exporter records its name scopes
    (['', 'features', 'features.1', 'op']); the TorchScript exporter names nodes '/features/features.1/Conv'."""
    meta = {p.key: p.value for p in node.metadata_props}
    scopes = meta.get("pkg.torch.onnx.name_scopes")
    if scopes:
        try:
            parts = ast.literal_eval(scopes)
        except (ValueError, SyntaxError):
            parts = None
        if isinstance(parts, list) and len(parts) >= 2:
            return str(parts[-2])
    if node.name.startswith("/") and node.name.count("/") >= 2:
        return node.name.strip("/").split("/")[-2]
    return None


def onnx_all_outputs(repository, variant: str, samples: np.ndarray, threads: int = 2) -> OnnxCapture:
    import onnx

    from crossdeploy.runtimes import open_runtime
    from crossdeploy.runtimes.introspect import onnx_intermediates

    runtime = open_runtime(repository, variant, threads=threads)
    runtime.verify()
    graph = onnx.load(str(runtime.artifact)).graph
    initializers = {t.name for t in graph.initializer}
    points = []
    for index, node in enumerate(graph.node):
        rule = next((p.value for p in node.metadata_props if p.key == "pkg.onnxscript.rewriter.rule_name"), None)
        for output in node.output:
            if output:
                points.append(OnnxPoint(index, node.name or f"{node.op_type}_{index}", node.op_type, output,
                                        [i for i in node.input if i], node_scope(node), rule))
    values = onnx_intermediates(runtime, [p.output for p in points], samples, threads)
    for point in points:
        value = values.get(point.output)
        if isinstance(value, np.ndarray) and np.issubdtype(value.dtype, np.floating):
            point.value = value
    graph_inputs = [i.name for i in graph.input if i.name not in initializers]
    return OnnxCapture([p for p in points if p.value is not None], graph_inputs, initializers)

"""A SavedModel run with every intermediate tensor of its serving signature kept, for export/diverge*.py.

The `serving_default` concrete function is frozen (`convert_variables_to_constants_v2`, what the TFLite converter
does to a concrete function: variables become constants and the nested function calls are inlined into one
graph), and the frozen graph is wrapped again as a function whose outputs are every floating tensor of every op
(`wrap_function.function_from_graph_def`, as `tf.compat.v1.wrap_function` pruning does). The values are those
of the same ops with the same weights the signature runs; TensorFlow may schedule them differently, never
rewrite them (no grappler pass but inlining runs on the frozen graph).
"""

from __future__ import annotations

import numpy as np

from .base import Runtime

SKIPPED = {"Const", "Placeholder", "NoOp"}


def savedmodel_intermediates(runtime: Runtime, samples: np.ndarray, threads: int = 2) -> tuple[list[dict], dict[str, np.ndarray], set[str], str]:
    """(ops in topological order: name, type, inputs, outputs; tensor values; the constant tensors (weights);
    the input tensor's name) of one run of the SavedModel's serving signature on `samples`."""
    import tensorflow as tf
    from tensorflow.python.eager import wrap_function
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    from ._tf import use_threads

    runtime.verify()
    use_threads(threads)
    loaded = tf.saved_model.load(str(runtime.artifact))  # kept: the signature reads its variables
    frozen = convert_variables_to_constants_v2(loaded.signatures["serving_default"])
    entry = frozen.inputs[0].name
    # ImportGraphDef creates the ops in topological order: the graph's op list is one
    operations = frozen.graph.get_operations()
    constants = {o.name for op in operations if op.type == "Const" for o in op.outputs}
    ops = []
    for op in operations:
        if op.type in SKIPPED:
            continue
        inputs = [i.name for i in op.inputs]
        if op.type == "Identity" and all(i in constants for i in inputs):
            constants.update(o.name for o in op.outputs)  # a weight read through the inlined call's Identity
            continue
        ops.append({"name": op.name, "type": op.type, "inputs": inputs,
                    "outputs": [o.name for o in op.outputs if o.dtype.is_floating]})
    fetched = [name for op in ops for name in op["outputs"]]
    function = wrap_function.function_from_graph_def(frozen.graph.as_graph_def(), [entry], fetched)
    values = function(tf.constant(np.ascontiguousarray(samples)))
    return ops, {name: value.numpy() for name, value in zip(fetched, values)}, constants, entry

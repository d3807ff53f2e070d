"""A Keras model run with every layer's output kept, for export/diverge*.py: the eager variant's model, built by
its adapter (`Runtime.load` verifies the sha256 first), rewired as a second functional model whose outputs are
every layer's output (the same layers, so the same weights)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .base import Runtime


@dataclass
class LayerOutput:
    name: str
    kind: str  # the layer's class name
    value: np.ndarray  # as Keras gives it (channels-last)
    output_op: str | None  # the op that writes the layer's output in the model's graph ("dense/BiasAdd")


def keras_layer_outputs(runtime: Runtime, samples: np.ndarray) -> list[LayerOutput]:
    """Every layer's output (the first, for a layer with several), in the functional model's layer order."""
    import tf_keras as keras

    runtime.load()
    try:
        model = runtime.model
        layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
        tensors = [layer.output[0] if isinstance(layer.output, (list, tuple)) else layer.output for layer in layers]
        values = keras.Model(model.inputs, tensors)(np.ascontiguousarray(samples), training=False)
        values = values if isinstance(values, (list, tuple)) else [values]
        outputs = []
        for layer, tensor, value in zip(layers, tensors, values):
            op = getattr(tensor, "name", None)
            outputs.append(LayerOutput(layer.name, type(layer).__name__, np.asarray(value), op.split(":")[0] if op else None))
        return outputs
    finally:
        runtime.unload()

"""A Keras 2 (`tf_keras`) model saved as a `.keras` file, called directly (no graph export)."""

from __future__ import annotations

import tensorflow as tf
import tf_keras as keras

from ._entry import entry_module
from ._tf import use_threads
from .base import Runtime


class KerasRuntime(Runtime):
    file = "model.keras"

    def _load(self) -> None:
        use_threads(self.threads)
        if self.config.entry:  # the model's module registers its custom layers (keras.saving) on import
            entry_module(self.config, self.version, self.directory)
        self.model = keras.models.load_model(str(self.artifact), compile=False)

    def _run(self, inputs):
        result = self.model(list(inputs.values()) if len(inputs) > 1 else next(iter(inputs.values())), training=False)
        values = result if isinstance(result, (list, tuple)) else [result]
        return self._outputs([tf.convert_to_tensor(v).numpy() for v in values])

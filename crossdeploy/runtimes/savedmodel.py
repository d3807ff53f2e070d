"""TensorFlow SavedModel through its `serving_default` signature (what TF Serving runs)."""

from __future__ import annotations

import tensorflow as tf

from ._tf import use_threads
from .base import Runtime


class SavedModelRuntime(Runtime):
    file = "model.savedmodel"

    def _load(self) -> None:
        use_threads(self.threads)
        self.model = tf.saved_model.load(str(self.artifact))
        self._signature = self.model.signatures["serving_default"]
        _, keywords = self._signature.structured_input_signature
        self._input_names = list(keywords)  # the artifact's own names, matched to the contract by position
        self._output_names = sorted(self._signature.structured_outputs)

    def _run(self, inputs):
        feed = {name: tf.constant(array) for name, array in zip(self._input_names, inputs.values())}
        result = self._signature(**feed)
        return self._outputs([result[name].numpy() for name in self._output_names])

    def _unload(self) -> None:
        self.__dict__.pop("_signature", None)
        super()._unload()

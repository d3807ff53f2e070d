"""TFLite flatbuffers through LiteRT (`ai_edge_litert`), not the deprecated tf.lite.Interpreter.

The batch axis is resized per call when the model's shape signature leaves it dynamic (-1).

A model converted with SELECT_TF_OPS holds Flex ops (TensorFlow kernels), which need the Flex delegate linked into
the interpreter. Neither ai_edge_litert's wheel nor TensorFlow's since 2.20 links it (LiteRT issue #6458: the same
"not supported by this interpreter" error from both), so such a model is refused at load, naming its Flex ops,
rather than at its first call.
"""

from __future__ import annotations

from ai_edge_litert.interpreter import Interpreter

from crossdeploy.errors import ArtifactError

from .base import Runtime


class LiteRTRuntime(Runtime):
    file = "model.tflite"

    def _load(self) -> None:
        # From bytes, not model_path: LiteRT maps a file and reads the weights from the mapping at each invoke,
        # so a file rewritten in place while served would change (or, truncated, crash) the running model.
        self.interpreter = Interpreter(model_content=self.artifact.read_bytes(), num_threads=self.threads)
        ops = getattr(self.interpreter, "_get_ops_details", list)()  # private, but in both LiteRT and tf.lite
        flex = sorted({op["op_name"] for op in ops if op["op_name"].startswith("Flex")})
        if flex:
            raise ArtifactError(self.name, str(self.artifact), (
                f"needs the Flex delegate for {', '.join(flex)} (TensorFlow ops its converter kept, SELECT_TF_OPS); "
                "this Python interpreter does not link it: serve it with a TFLite runtime built with the Flex delegate"))
        self._inputs = self.interpreter.get_input_details()
        self._output_indices = [d["index"] for d in self.interpreter.get_output_details()]
        self._shapes = None

    def _run(self, inputs):
        interpreter = self.interpreter
        shapes = [a.shape for a in inputs.values()]
        if shapes != self._shapes:
            for detail, shape in zip(self._inputs, shapes):
                interpreter.resize_tensor_input(detail["index"], list(shape), strict=True)
            interpreter.allocate_tensors()
            self._shapes = shapes
        for detail, array in zip(self._inputs, inputs.values()):
            interpreter.set_tensor(detail["index"], array)
        interpreter.invoke()
        return self._outputs([interpreter.get_tensor(i).copy() for i in self._output_indices])

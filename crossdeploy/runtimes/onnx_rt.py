"""ONNX files (fp32 and int8 QDQ) through onnxruntime's CPU execution provider."""

from __future__ import annotations

import onnxruntime as ort

from .base import Runtime


class OnnxRuntime(Runtime):
    file = "model.onnx"

    def _load(self) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        # Idle intra-op threads spin by default: on a 2-core server they steal the event loop's core.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(self.artifact), options, providers=["CPUExecutionProvider"])
        self._input_names = [i.name for i in self.session.get_inputs()]

    def _run(self, inputs):
        feed = dict(zip(self._input_names, inputs.values()))
        return self._outputs(self.session.run(None, feed))

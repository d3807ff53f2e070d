"""ONNX files (fp32 and int8 QDQ) through OpenVINO's CPU plugin: a second engine for the same `model.onnx`.

openvino is installed without openvino-telemetry (see the Makefile): the only code in openvino that reports
usage is its model converter (ovc), which falls back to a stub when that package is absent, and this adapter
reads the ONNX file with `Core.read_model`, which never reaches it.
"""

from __future__ import annotations

import threading

import openvino as ov

from .base import Runtime

# On a CPU with bf16 units (AVX512_BF16, AMX) the CPU plugin computes in bf16 unless told otherwise: logits then
# differ from onnxruntime by ~1e-3, ten times the float tolerance. f32 keeps the two engines comparable.
PRECISION = "f32"


class OpenVinoRuntime(Runtime):
    file = "model.onnx"
    tool = "openvino"

    def _load(self) -> None:
        core = ov.Core()
        model = core.read_model(str(self.artifact))
        self.model = core.compile_model(model, "CPU", {
            "INFERENCE_PRECISION_HINT": PRECISION,
            "INFERENCE_NUM_THREADS": self.threads,
            # One stream and no pinning: `threads` bounds the compute, and a shared 2-core host has no core to pin to.
            "NUM_STREAMS": 1,
            "PERFORMANCE_HINT": "LATENCY",
            "ENABLE_CPU_PINNING": False,
        })
        self._requests = threading.local()  # an infer request runs one call at a time: one per calling thread

    @property
    def metadata(self) -> dict[str, str | int]:
        """What the compiled model actually runs with (the plugin may adjust what it was asked for)."""
        if not self.ready:
            return {"runtime": self.tool, "version": ov.__version__}
        return {"runtime": self.tool, "version": ov.__version__, "device": "CPU",
                "precision": self.model.get_property("INFERENCE_PRECISION_HINT").get_type_name(),
                "threads": int(self.model.get_property("INFERENCE_NUM_THREADS")),
                "streams": int(self.model.get_property("NUM_STREAMS"))}

    def _run(self, inputs):
        request = getattr(self._requests, "request", None)
        if request is None:
            request = self._requests.request = self.model.create_infer_request()
        # The inputs are contiguous arrays of the model's dtypes, only read while this synchronous call runs: shared,
        # not copied. The outputs are copied: the request reuses its buffers, and a result handed back must not change.
        result = request.infer(dict(enumerate(inputs.values())), share_inputs=True, share_outputs=False)
        return self._outputs([result[output] for output in self.model.outputs])

    def _unload(self) -> None:
        super()._unload()
        self._requests = threading.local()

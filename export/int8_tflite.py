"""Re-quantizing a TFLite PTQ variant with some nodes left in float, for int8_sensitivity.

The TFLite converter has no allow-list; its quantization debugger (`tf.lite.experimental.QuantizationDebugger`,
the documented way to do selective quantization) takes a deny-list of nodes by output tensor name. "This node
alone" is therefore every other node denied; a denied node needs float kernels, so those candidates allow
TFLITE_BUILTINS beside TFLITE_BUILTINS_INT8. Keeping nothing in float is the shipped conversion itself
(int8 kernels only), and keeping everything is the plain fp32 conversion: the debugger refuses a model with no
quantized node at all.
"""

from __future__ import annotations

import io
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from crossdeploy.errors import CrossdeployError
from crossdeploy.repository import ModelRepository, VariantConfig, reference_of

DEBUG_SAMPLES = 20  # inputs the debugger runs to list the quantized nodes: only their names are used


class TfliteQuantizer:
    file = "model.tflite"

    def __init__(self, repository: ModelRepository, config: VariantConfig, calibration: np.ndarray, work: Path):
        from crossdeploy.runtimes import open_runtime

        source = reference_of(config, repository.list())
        if source is None:
            raise CrossdeployError(f"'{config.name}' is converted from the Keras model of {config.model}, "
                                   "whose eager variant is not in the repository")
        self._runtime = open_runtime(repository, source, threads=1).load()
        self.config = config
        self.calibration = calibration.astype(np.float32)
        self.work = work
        work.mkdir(parents=True, exist_ok=True)
        self._count = 0
        self._nodes: list[tuple[str, str]] | None = None

    def _converter(self, quantize: bool, float_kernels: bool):
        import tensorflow as tf

        from .keras_exporters import _converter

        signature = SimpleNamespace(inputs=self.config.inputs, outputs=self.config.outputs)
        converter = _converter(SimpleNamespace(model=self._runtime.model, contract=signature))
        if not quantize:
            return converter
        # The settings of export_tflite_int8 (keras_exporters.py); the keep-float-0 check shows they still match.
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        calibration = self.calibration
        converter.representative_dataset = lambda: ([calibration[i : i + 1]] for i in range(len(calibration)))
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8] + (
            [tf.lite.OpsSet.TFLITE_BUILTINS] if float_kernels else [])
        converter.inference_input_type = tf.float32
        converter.inference_output_type = tf.float32
        return converter

    def _debugger(self, denied: list[str] | None, samples: int):
        import tensorflow as tf

        options = tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=denied)
        calibration = self.calibration[:samples]
        return tf.lite.experimental.QuantizationDebugger(
            converter=self._converter(quantize=True, float_kernels=True), debug_options=options,
            debug_dataset=lambda: ([calibration[i : i + 1]] for i in range(len(calibration))))

    def quantizable(self) -> list[tuple[str, str]]:
        """(output tensor name, op) of every node the converter quantizes, in graph order."""
        if self._nodes is None:
            debugger = self._debugger(None, DEBUG_SAMPLES)
            debugger.run()
            dump = io.StringIO()
            debugger.layer_statistics_dump(dump)
            import csv

            rows = list(csv.DictReader(io.StringIO(dump.getvalue())))
            self._nodes = [(row["tensor_name"], row["op_name"]) for row in rows]
        return self._nodes

    def quantize(self, nodes_to_quantize: list[str] | None = None, nodes_to_exclude: list[str] | None = None) -> Path:
        names = [name for name, _ in self.quantizable()]
        denied = list(nodes_to_exclude or [])
        if nodes_to_quantize is not None:
            denied += [n for n in names if n not in nodes_to_quantize]
        if not denied:
            content = self._converter(quantize=True, float_kernels=False).convert()
        elif set(names) <= set(denied):
            content = self._converter(quantize=False, float_kernels=True).convert()
        else:
            content = self._debugger(denied, len(self.calibration)).get_nondebug_quantized_model()
        self._count += 1
        folder = self.work / f"candidate-{self._count}"
        folder.mkdir()
        (folder / self.file).write_bytes(content)
        return folder

    def is_quantized(self, folder: Path) -> bool:
        from ai_edge_litert.interpreter import Interpreter

        interpreter = Interpreter(model_path=str(folder / self.file))
        return any(d["dtype"] == np.int8 for d in interpreter.get_tensor_details())

"""Static int8 quantization of an ONNX model with onnxruntime (QDQ format, calibrated).

Static QDQ was measured ~4x faster than dynamic quantization on this CPU for the digits CNN.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from crossdeploy.errors import ExportError
from crossdeploy.repository import ToolStep
from crossdeploy.versions import version_of

from .context import ExportContext, Exported

CALIBRATION_BATCH = 20


class CalibrationReader:
    """onnxruntime's CalibrationDataReader protocol over the calibration samples."""

    def __init__(self, name: str, samples: np.ndarray):
        self._batches = iter([{name: samples[i : i + CALIBRATION_BATCH]} for i in range(0, len(samples), CALIBRATION_BATCH)])

    def get_next(self):
        return next(self._batches, None)


def prepare(onnx_path: Path, prepared: Path) -> Path:
    """onnxruntime's pre-processing before quantization (the node names the quantizer sees are this graph's)."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    quant_pre_process(str(onnx_path), str(prepared), skip_symbolic_shape=True)
    return prepared


def quantize_qdq(prepared: Path, out: Path, input_name: str, calibration: np.ndarray, **nodes) -> None:
    """The shipped int8 recipe: static QDQ, per-channel int8 weights and activations, MinMax calibration.
    `nodes`: quantize_static's nodes_to_quantize / nodes_to_exclude (the sensitivity analysis varies only those)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    quantize_static(
        str(prepared), str(out), CalibrationReader(input_name, calibration.astype(np.float32)),
        quant_format=QuantFormat.QDQ, per_channel=True, activation_type=QuantType.QInt8,
        weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax, **nodes,
    )


def export_onnx_int8(ctx: ExportContext, out: Path, source: str = "torch-onnx") -> Exported:
    onnx_path = ctx.intermediates.get(source)
    if onnx_path is None:
        raise ExportError(source, "its ONNX file must be exported before it can be quantized")
    prepared = prepare(onnx_path, ctx.scratch / f"{source}-preprocessed.onnx")
    quantize_qdq(prepared, out / "model.onnx", ctx.contract.inputs[0].name, ctx.calibration)
    return Exported(steps=[
        ToolStep(tool="torch.onnx (dynamo)", version=version_of("torch"), detail=f"opset {ctx.contract.opset}"),
        ToolStep(tool="onnxruntime.quantization", version=version_of("onnxruntime"),
                 detail=f"static QDQ int8, per-channel, MinMax over {len(ctx.calibration)} training samples"),
    ])

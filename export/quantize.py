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


class _Calibration:
    """onnxruntime's CalibrationDataReader protocol over the calibration samples."""

    def __init__(self, name: str, samples: np.ndarray):
        self._batches = iter([{name: samples[i : i + CALIBRATION_BATCH]} for i in range(0, len(samples), CALIBRATION_BATCH)])

    def get_next(self):
        return next(self._batches, None)


def export_onnx_int8(ctx: ExportContext, out: Path, source: str = "torch-onnx") -> Exported:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    onnx_path = ctx.intermediates.get(source)
    if onnx_path is None:
        raise ExportError(source, "its ONNX file must be exported before it can be quantized")
    prepared = ctx.scratch / f"{source}-preprocessed.onnx"
    quant_pre_process(str(onnx_path), str(prepared), skip_symbolic_shape=True)
    quantize_static(
        str(prepared), str(out / "model.onnx"),
        _Calibration(ctx.contract.inputs[0].name, ctx.calibration.astype(np.float32)),
        quant_format=QuantFormat.QDQ, per_channel=True, activation_type=QuantType.QInt8,
        weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax,
    )
    return Exported(steps=[
        ToolStep(tool="torch.onnx (dynamo)", version=version_of("torch"), detail=f"opset {ctx.contract.opset}"),
        ToolStep(tool="onnxruntime.quantization", version=version_of("onnxruntime"),
                 detail=f"static QDQ int8, per-channel, MinMax over {len(ctx.calibration)} training samples"),
    ])

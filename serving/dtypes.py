"""The protocol-to-numpy dtype table, once: KServe V2 names, TF Serving's DT_ names, numpy dtypes."""

from __future__ import annotations

import numpy as np

V2_TO_NUMPY: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_), "UINT8": np.dtype(np.uint8), "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32), "UINT64": np.dtype(np.uint64), "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16), "INT32": np.dtype(np.int32), "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16), "FP32": np.dtype(np.float32), "FP64": np.dtype(np.float64),
}
NUMPY_TO_V2 = {dtype: name for name, dtype in V2_TO_NUMPY.items()}
V2_TO_TF = {"FP32": "DT_FLOAT", "FP64": "DT_DOUBLE", "INT32": "DT_INT32", "INT64": "DT_INT64", "UINT8": "DT_UINT8",
            "FP16": "DT_HALF", "BOOL": "DT_BOOL", "INT8": "DT_INT8", "BYTES": "DT_STRING"}
# What Triton would call the platform serving each format.
PLATFORMS = {"onnx": "onnxruntime_onnx", "savedmodel": "tensorflow_savedmodel", "tflite": "tensorflow_tflite",
             "torchscript": "pytorch_libtorch", "torch-eager": "pytorch_eager", "torch-export": "pytorch_export",
             "aoti": "pytorch_aotinductor", "executorch": "executorch_pte", "keras": "tensorflow_keras"}

"""A stand-in for torchvision, for onnx2torch only (see export/bridges/onnx2torch_bridge.py).

onnx2torch imports torchvision at import time for two converters (NonMaxSuppression, RoiAlign). PyPI's
torchvision is a CUDA build that fails to import beside the CPU torch 2.13.0 wheel ("operator
torchvision::nms does not exist"), so the bridge puts this folder on sys.path instead. Models that use
those two ONNX ops fail to convert with a clear message; the TorchScript onnx2torch produces never needs it.
"""

from . import ops  # noqa: F401

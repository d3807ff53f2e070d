"""Installed versions of the tools a pathway chains together, read from package metadata (no imports)."""

from __future__ import annotations

from functools import lru_cache
from importlib import metadata

INFERENCE_PACKAGES = (  # what builds, runs and serves a variant: recorded in configs and bench reports
    "torch", "tensorflow", "tf-keras", "onnx", "onnxruntime", "onnxscript", "onnx2tf", "tf2onnx",
    "onnx2torch", "ai-edge-litert", "executorch", "numpy", "fastapi", "uvicorn", "orjson",
)


@lru_cache(maxsize=None)
def version_of(package: str) -> str:
    try:
        return metadata.version(package).split("+")[0]
    except metadata.PackageNotFoundError:
        return "not installed"


def inference_versions() -> dict[str, str]:
    return {name: version_of(name) for name in INFERENCE_PACKAGES}

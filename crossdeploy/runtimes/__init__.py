"""The runtime registry: format name -> adapter class. Everything that runs an artifact goes through it.

Adapters are imported lazily so that naming a format costs nothing until it is loaded.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from crossdeploy.errors import ConfigError
from crossdeploy.repository import ModelRepository

from .base import Runtime

REGISTRY: dict[str, str] = {
    "torch-eager": "torch_eager:TorchEagerRuntime",
    "torchscript": "torchscript:TorchScriptRuntime",
    "torch-export": "torch_export:ExportedProgramRuntime",
    "aoti": "aoti:AOTInductorRuntime",
    "executorch": "executorch_rt:ExecuTorchRuntime",
    "onnx": "onnx_rt:OnnxRuntime",
    "savedmodel": "savedmodel:SavedModelRuntime",
    "tflite": "tflite:LiteRTRuntime",
    "keras": "keras_rt:KerasRuntime",
}


def runtime_class(format_name: str) -> type[Runtime]:
    if format_name not in REGISTRY:
        raise ConfigError("format", f"no runtime adapter for format '{format_name}' (known: {', '.join(REGISTRY)})")
    module, _, cls = REGISTRY[format_name].partition(":")
    return getattr(importlib.import_module(f"{__name__}.{module}"), cls)


def open_runtime(repository: ModelRepository, name: str, version: int | None = None, threads: int = 2) -> Runtime:
    """Builds the adapter for one variant version of the repository (not loaded yet)."""
    config, record = repository.get(name, version)
    directory: Path = repository.version_dir(name, record.version)
    return runtime_class(config.format)(config, record, directory, threads=threads)


__all__ = ["REGISTRY", "Runtime", "open_runtime", "runtime_class"]

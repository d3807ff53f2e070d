"""The runtime registry: format name -> adapter class, and the other engines that can run the same artifact of a
format. Everything that runs an artifact goes through it.

Adapters are imported lazily so that naming a format costs nothing until it is loaded.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from crossdeploy.errors import ConfigError, CrossdeployError
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
# Engines other than the format's own that run the very same artifact file: format -> {runtime name: adapter}.
ALTERNATIVES: dict[str, dict[str, str]] = {
    "onnx": {"openvino": "openvino_rt:OpenVinoRuntime"},
}


def _adapter(path: str) -> type[Runtime]:
    module, _, cls = path.partition(":")
    return getattr(importlib.import_module(f"{__name__}.{module}"), cls)


def runtime_class(format_name: str, runtime: str | None = None) -> type[Runtime]:
    """The adapter of a format; with `runtime`, the named alternative engine for it."""
    if format_name not in REGISTRY:
        raise ConfigError("format", f"no runtime adapter for format '{format_name}' (known: {', '.join(REGISTRY)})")
    if runtime is None:
        return _adapter(REGISTRY[format_name])
    choices = ALTERNATIVES.get(format_name, {})
    if runtime not in choices:
        offered = ", ".join(f"{r} ({f})" for f, named in ALTERNATIVES.items() for r in named)
        raise CrossdeployError(f"no runtime '{runtime}' for format '{format_name}' (alternative runtimes: {offered})")
    try:  # an alternative engine is installed by `make install` beside the package, not as its dependency
        return _adapter(choices[runtime])
    except ImportError as exc:
        raise CrossdeployError(f"runtime '{runtime}' is not installed ({exc.name or exc}): `make install` installs it") from None


def open_runtime(repository: ModelRepository, name: str, version: int | None = None, threads: int = 2,
                 runtime: str | None = None) -> Runtime:
    """Builds the adapter for one variant version of the repository (not loaded yet). `runtime` names another
    engine for the variant's own file (see ALTERNATIVES); the one its config records is the default."""
    config, record = repository.get(name, version)
    directory: Path = repository.version_dir(name, record.version)
    if runtime == config.runtime.tool:
        runtime = None
    return runtime_class(config.format, runtime)(config, record, directory, threads=threads)


__all__ = ["ALTERNATIVES", "REGISTRY", "Runtime", "open_runtime", "runtime_class"]

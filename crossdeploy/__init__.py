"""crossdeploy: one model per framework, every deployment pathway, served, checked for parity and timed.

Importing the package first keeps every framework's caches and telemetry inside the project folder;
it must happen before torch, TensorFlow or onnxruntime are imported (every entry point does so).
"""

import os
from pathlib import Path

__version__ = "0.1.0"


def _keep_writes_inside_project() -> None:
    cache = Path(os.environ.get("CROSSDEPLOY_CACHE", Path.cwd() / ".cache")).resolve()
    defaults = {
        "ORT_DISABLE_TELEMETRY": "1",  # onnxruntime writes under ~/.cache at import otherwise
        "KERAS_HOME": str(cache / "keras"),
        "TORCHINDUCTOR_CACHE_DIR": str(cache / "torchinductor"),
        "MPLCONFIGDIR": str(cache / "matplotlib"),
        "XDG_CACHE_HOME": str(cache),
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "CUDA_VISIBLE_DEVICES": "-1",  # CPU-only machine: skip the CUDA probe and its noise
        "TF_ENABLE_ONEDNN_OPTS": "0",  # oneDNN reorders float sums: results would drift between runs
        "TOKENIZERS_PARALLELISM": "false",
        "RAY_USAGE_STATS_ENABLED": "0",  # the Ray engine: no usage report leaves the machine
    }
    for key, value in defaults.items():
        os.environ.setdefault(key, value)


_keep_writes_inside_project()

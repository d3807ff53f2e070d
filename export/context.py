"""What every exporter receives, and what it hands back to be written into the variant's config."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from crossdeploy.repository import ToolStep

from .spec import ExportContract


@dataclass
class ExportContext:
    contract: ExportContract
    source: str  # "pytorch" | "keras"
    model: object  # nn.Module in eval mode, or a tf_keras.Model
    example: np.ndarray  # a small batch (>= 2, so torch.export keeps the batch axis dynamic)
    calibration: np.ndarray  # the spec's calibration inputs for int8, never the test samples
    scratch: Path  # intermediate files (ONNX handed from one pathway to the next)
    intermediates: dict[str, Path] = field(default_factory=dict)
    # Workarounds a converter needed, keyed like `intermediates`; every pathway built on it reports them.
    workarounds: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class Exported:
    steps: list[ToolStep]  # the chain after the source framework, with tool versions
    dynamic_batch: bool = True
    max_batch: int | None = None
    batch_note: str = ""
    notes: list[str] = field(default_factory=list)

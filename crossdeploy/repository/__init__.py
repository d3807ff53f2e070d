"""The neutral core under export, serving and bench: the Triton-style model repository (its config schema and
`ModelRepository`) and the shared vocabulary (formats, dtypes, tolerances). Imports neither torch nor TensorFlow,
and nothing of crossdeploy but its errors."""

from .config import (
    CONFIG, FileRecord, OutputParity, ParityResult, Support, ToolStep, VariantConfig, VersionRecord,
)
from .integrity import PinMismatch, carried_module, index_digest, packaged, variant_digest
from .store import STAGING, ModelRepository, record_files, sha256_of
from .vocabulary import (
    EAGER_FORMAT, FLOAT_TOLERANCE, FORMATS, INT8_TOLERANCE, NUMPY_TO_V2, PLATFORMS, SOURCE_FRAMEWORKS, V2_TO_NUMPY,
    INT8_STEPS, V2_TO_TF, TensorSignature, Tolerance, default_tolerance, quantization_bound, reference_of,
)

__all__ = [
    "CONFIG", "EAGER_FORMAT", "FLOAT_TOLERANCE", "FORMATS", "INT8_STEPS", "INT8_TOLERANCE", "NUMPY_TO_V2", "PLATFORMS",
    "SOURCE_FRAMEWORKS", "STAGING", "V2_TO_NUMPY", "V2_TO_TF", "FileRecord", "ModelRepository", "OutputParity",
    "ParityResult", "PinMismatch", "Support", "TensorSignature", "ToolStep", "Tolerance", "VariantConfig",
    "VersionRecord", "carried_module", "default_tolerance", "index_digest", "packaged", "quantization_bound", "record_files", "reference_of",
    "sha256_of", "variant_digest",
]

"""Which model deployment of the Ray engine runs a format: one per runtime family, so that a crash, a leak or a
hung call in one framework takes down only its own replicas. Four families rather than one deployment per
variant: each replica imports its framework once (torch ~0.4 GB, TensorFlow ~0.6 GB resident), and fifteen
processes would hold those imports many times over on a machine with 2 cores."""

from __future__ import annotations

# Every runtime format has a family (tests/test_layers.py checks it against the runtime registry).
FAMILY_OF_FORMAT = {
    "torch-eager": "torch", "torchscript": "torch", "torch-export": "torch", "aoti": "torch",
    "savedmodel": "tensorflow", "keras": "tensorflow",
    "onnx": "onnx", "tflite": "onnx",
    "executorch": "executorch",
}


def family_of(format_name: str) -> str | None:
    """The family whose replicas run `format_name`; None for a format no adapter knows (the ingress reports it)."""
    return FAMILY_OF_FORMAT.get(format_name)


def deployment_name(family: str) -> str:
    return f"models-{family}"

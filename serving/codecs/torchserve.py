"""TorchServe predictions: an uploaded image of a digit, or JSON `{"data": ...}` holding one example or a batch.
The answer is what TorchServe's image_classifier handler gives: the top-5 classes with their softmax
probabilities, one object per example (a bare object for a single one).

Server side: `decode` (JSON) and `decode_image`, `encode`. Client side: `encode_request`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson

from crossdeploy.errors import InvalidInput
from crossdeploy.repository import V2_TO_NUMPY

from .image import digit_from_image
from .tensors import Signature, conform, json_array, parse_json

TOP_K = 5
CONTENT_TYPE = "application/json"


def with_batch(array: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """One example (e.g. [8, 8], or flat [64]) becomes a batch of one; a batch passes unchanged."""
    example = shape[1:]
    if array.ndim == 1 and len(example) > 1 and array.size == int(np.prod(example)):
        return array.reshape(1, *example)
    return array[None] if array.ndim == len(shape) - 1 else array


def decode(request: bytes | dict | list, signature: Signature, max_batch: int | None = None) -> dict[str, np.ndarray]:
    """`{"data": ...}` (or `{"instances": ...}`, or the bare values) for a single-input model."""
    if isinstance(request, (bytes, bytearray, memoryview)):
        request = parse_json(request)
    data = request.get("data", request.get("instances")) if isinstance(request, dict) else request
    if data is None:
        raise InvalidInput("the JSON body needs a 'data' field")
    return decode_values(data, signature, max_batch)


def decode_values(data: Any, signature: Signature, max_batch: int | None = None) -> dict[str, np.ndarray]:
    """Numbers for the model's one input: a single example gets its batch axis."""
    spec = signature[0]
    array = json_array(spec.name, data, V2_TO_NUMPY[spec.datatype])
    return conform(signature, {spec.name: with_batch(array, spec.shape)}, max_batch)


def decode_image(body: bytes, signature: Signature) -> dict[str, np.ndarray]:
    """An uploaded picture (PNG, JPEG, anything Pillow reads) as a batch of one."""
    spec = signature[0]
    return conform(signature, {spec.name: digit_from_image(body)[None]}, None)


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def top_classes(logits: np.ndarray, k: int = TOP_K) -> list[dict[str, float]]:
    probabilities = softmax(logits.astype(np.float64))
    order = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
    return [{str(i): float(p[i]) for i in row} for p, row in zip(probabilities, order)]


def encode(logits: np.ndarray) -> bytes:
    classes = top_classes(logits)
    return orjson.dumps(classes[0] if len(classes) == 1 else classes)


def encode_request(inputs: dict[str, np.ndarray]) -> tuple[bytes, dict[str, str]]:
    """(body, headers) of a JSON prediction request `{"data": ...}` for a single-input model."""
    if len(inputs) != 1:
        raise ValueError(f"a TorchServe JSON request carries one input, got {sorted(inputs)}")
    array = next(iter(inputs.values()))
    return orjson.dumps({"data": array}, option=orjson.OPT_SERIALIZE_NUMPY), {"Content-Type": CONTENT_TYPE}

"""TorchServe's inference API (ping, predictions) and the read side of its management API (models).

A prediction takes an uploaded image (raw body, `curl -T digit.png`, or multipart `-F data=@digit.png`) or
JSON `{"data": ...}` and answers like TorchServe's image_classifier handler: the top-5 classes with their
softmax probabilities, one object per image.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field
from starlette.datastructures import UploadFile

from crossdeploy.errors import InvalidInput, PayloadTooLarge

from .core import Gateway, parse_version
from .http import json_response, openapi_body, parse_json, read_body, require_media
from .codecs.image import digit_from_image
from .kserve_v2 import gateway, json_tensor
from .registry import Served

TOP_K = 5
IMAGE_MEDIA = ("image/*", "application/octet-stream")
MEDIA = ("application/json", "multipart/form-data", *IMAGE_MEDIA)
router = APIRouter(tags=["TorchServe"])
inference = APIRouter(tags=["TorchServe"])  # the hot routes, mounted before everything else


class PredictionRequest(BaseModel):
    data: Any = Field(description="one [8, 8] image of 0..16 intensities, or a batch [N, 8, 8]")


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def top_classes(logits: np.ndarray, k: int = TOP_K) -> list[dict[str, float]]:
    probabilities = softmax(logits.astype(np.float64))
    order = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
    return [{str(i): float(p[i]) for i in row} for p, row in zip(probabilities, order)]


async def read_upload(request: Request, limit: int) -> tuple[str, bytes]:
    """("image", bytes) or ("json", bytes) from a raw body or the first part of a multipart form."""
    kind = require_media(request, MEDIA)
    if kind == "multipart/form-data":
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise PayloadTooLarge(limit)
        received = 0

        async def bounded():  # a chunked form has no Content-Length: count what arrives, stop past the limit
            nonlocal received
            message = await request.receive()
            received += len(message.get("body", b""))
            if received > limit:
                raise PayloadTooLarge(limit)
            return message

        try:
            form = await Request(request.scope, bounded).form(max_files=4, max_fields=16, max_part_size=limit)
        except PayloadTooLarge:
            raise
        except Exception as exc:  # python-multipart raises several types for a broken form
            raise InvalidInput(f"malformed multipart form: {exc}") from exc
        for key in ("data", "body", "file", *form.keys()):
            part = form.get(key)
            if isinstance(part, UploadFile):
                content = await part.read()
                return ("json" if (part.content_type or "").endswith("json") else "image"), content
            if isinstance(part, str) and part:
                return "json", part.encode()
        raise InvalidInput("the multipart form has no 'data' part")
    body = await read_body(request, limit)
    if not body:
        raise InvalidInput("the request body is empty: send an image or JSON {\"data\": ...}")
    return ("json" if kind == "application/json" else "image"), body


def decode_prediction(kind: str, payload: bytes, served: Served) -> dict[str, np.ndarray]:
    spec = served.config.inputs[0]
    if kind == "image":
        return {spec.name: digit_from_image(payload)[None]}
    document = parse_json(payload)
    data = document.get("data", document.get("instances")) if isinstance(document, dict) else document
    if data is None:
        raise InvalidInput("the JSON body needs a 'data' field")
    return {spec.name: with_batch(json_tensor(spec.name, data, np.dtype(np.float32)), spec.shape)}


def with_batch(array: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """One example ([8, 8], or flat [64]) becomes a batch of one; a batch passes unchanged."""
    example = shape[1:]
    if array.ndim == 1 and array.size == int(np.prod(example)) and len(example) > 1:
        return array.reshape(1, *example)
    return array[None] if array.ndim == len(shape) - 1 else array


@router.get("/ping", summary="Health (TorchServe)")
async def ping(request: Request):
    state = getattr(request.app.state, "gateway", None)
    healthy = bool(state and any(e.ready for e in state.registry.all()))
    return json_response({"status": "Healthy" if healthy else "Unhealthy"}, 200 if healthy else 503)


@inference.api_route("/predictions/{name}", methods=["POST", "PUT"], summary="Predict from an image or JSON",
                     openapi_extra=openapi_body(PredictionRequest, path=("name",)))
@inference.api_route("/predictions/{name}/{version}", methods=["POST", "PUT"], summary="Predict on one version",
                     openapi_extra=openapi_body(PredictionRequest, path=("name", "version")))
async def predictions(request: Request):
    name, version, gw = request.path_params["name"], request.path_params.get("version"), request.app.state.gateway
    kind, payload = await read_upload(request, request.app.state.settings.max_body_bytes)

    def encode(served: Served, outputs: dict[str, np.ndarray]):
        classes = top_classes(outputs[served.config.outputs[0].name])
        return classes[0] if len(classes) == 1 else classes

    response = await gw.handle("torchserve", name, version, lambda served: decode_prediction(kind, payload, served), encode)
    return json_response(response)


def _description(entry: Served) -> dict:
    config = entry.config
    return {
        "modelName": entry.name, "modelVersion": str(entry.version), "modelUrl": f"{entry.name}/{entry.version}",
        "runtime": config.runtime.tool if config else "", "minWorkers": 1, "maxWorkers": 1, "batchSize": 1,
        "maxBatchDelay": 0, "loadedAtStartup": True,
        "workers": [{"id": f"{entry.name}-v{entry.version}", "status": "READY" if entry.ready else "UNLOADED",
                     "gpu": False, "memoryUsage": 0}],
    }


@router.get("/models", summary="Registered models (TorchServe management API)")
async def list_models(gw: Gateway = Depends(gateway)):
    return json_response({"models": [{"modelName": n, "modelUrl": n} for n in gw.registry.names()]})


@router.get("/models/{name}", summary="Describe a model's versions (TorchServe management API)")
@router.get("/models/{name}/{version}", summary="Describe one version")
async def describe_model(name: str, version: str | None = None, gw: Gateway = Depends(gateway)):
    entries = [gw.registry.lookup(name, parse_version(name, version))] if version else gw.registry.versions(name)
    return json_response([_description(e) for e in entries])

"""TorchServe's inference API (ping, predictions) and the read side of its management API (models).

A prediction takes an uploaded image (raw body, `curl -T digit.png`, or multipart `-F data=@digit.png`) or
JSON `{"data": ...}` and answers like TorchServe's image_classifier handler: the top-5 classes with their
softmax probabilities, one object per image (the wire form is `codecs.torchserve`). Errors are TorchServe's
`{"code", "type", "message"}`.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from . import health
from . import openapi as doc
from .codecs import torchserve as codec
from .core import Gateway, parse_version
from .error_responses import json_response
from .registry import Served
from .routing import protocol_router
from .uploads import MULTIPART, read_upload

router = protocol_router("TorchServe")


class Health(BaseModel):
    status: str = Field(description="Healthy or Unhealthy")


class ModelEntry(BaseModel):
    modelName: str
    modelUrl: str


class ModelList(BaseModel):
    models: list[ModelEntry]


class ModelDescription(BaseModel):
    modelName: str
    modelVersion: str
    modelUrl: str
    runtime: str
    minWorkers: int
    maxWorkers: int
    batchSize: int
    maxBatchDelay: int
    loadedAtStartup: bool
    workers: list[dict[str, Any]]


_CLASSES = {"type": "object", "additionalProperties": {"type": ["number", "null"]},
            "description": "class -> probability, the top 5 (null where the model's outputs are not finite)"}
UPLOAD_BODY = {
    **doc.json_body(doc.component("PredictionRequest", {
        "type": "object", "required": ["data"], "properties": {"data": doc.ref("ServedInput")},
        "description": "one example (e.g. an [8, 8] image of 0..16 intensities), a batch [N, 8, 8], or one flattened"})),
    "image/*": {"schema": {"type": "string", "format": "binary", "description": "a picture of a digit"}},
    "application/octet-stream": {"schema": {"type": "string", "format": "binary", "description": "a picture of a digit"}},
    MULTIPART: {"schema": {"type": "object", "required": ["data"], "properties": {"data": {"type": "string", "format": "binary"}},
                           "description": "the picture (or JSON) in the part named data, body or file"},
                "encoding": {"data": {"contentType": "image/*"}}},
}
_PREDICT = {"ok": {"application/json": {"schema": {"anyOf": [_CLASSES, {"type": "array", "items": _CLASSES}]}}},
            "errors": (400, 404, 408, 413, 415, 500, 503, 504), "torchserve": True, "body": UPLOAD_BODY}
_NAME, _VERSION = (doc.MODEL,), (doc.MODEL, doc.VERSION)


@router.post("/predictions/{name}", **doc.operation("torchserve_predict", "Predict from an image or JSON", parameters=_NAME, **_PREDICT))
@router.put("/predictions/{name}", **doc.operation("torchserve_predict_put", "Predict from an image or JSON (curl -T)", parameters=_NAME, **_PREDICT))
@router.post("/predictions/{name}/{version}", **doc.operation("torchserve_predict_version", "Predict on one version", parameters=_VERSION, **_PREDICT))
@router.put("/predictions/{name}/{version}", **doc.operation("torchserve_predict_version_put", "Predict on one version (curl -T)", parameters=_VERSION, **_PREDICT))
async def predictions(request: Request) -> Response:
    gateway: Gateway = request.app.state.gateway
    params = request.path_params
    kind, payload = await gateway.receive("torchserve", params["name"], read_upload(request, gateway.max_body_bytes))

    def decode(served: Served):
        if kind == "image":
            return codec.decode_image(payload, served.config.inputs)
        return codec.decode(payload, served.config.inputs, gateway.max_batch)

    def encode(served: Served, outputs):
        return codec.encode(outputs[served.output_names[0]])

    return Response(await gateway.handle("torchserve", params["name"], params.get("version"), decode, encode),
                    media_type="application/json")


_HEALTH = {"application/json": {"schema": doc.component(Health)}}


@router.get("/ping", **doc.operation(
    "torchserve_ping", "Health (TorchServe): Healthy, Partial Healthy (some loaded version fails its probe) or Unhealthy",
    ok=_HEALTH, also={503: {"description": "no model is ready", "content": _HEALTH}}))
async def ping(request: Request) -> Response:
    state = getattr(request.app.state, "gateway", None)
    entries = await health.check_all(state.registry) if state else []
    if health.server_ready(entries):
        return json_response({"status": "Healthy"})
    if any(e.ready for e in entries):
        return json_response({"status": "Partial Healthy"})
    return json_response({"status": "Unhealthy"}, 503)


def _description(entry: Served) -> dict:
    config = entry.config
    return {
        "modelName": entry.name, "modelVersion": str(entry.version), "modelUrl": f"{entry.name}/{entry.version}",
        "runtime": config.runtime.tool if config else "", "minWorkers": 1, "maxWorkers": 1, "batchSize": 1,
        "maxBatchDelay": 0, "loadedAtStartup": True,
        "workers": [{"id": f"{entry.name}-v{entry.version}", "gpu": False, "memoryUsage": 0, "reason": entry.reason,
                     "status": "READY" if entry.ready else "UNHEALTHY" if entry.loaded else "UNLOADED"}],
    }


@router.get("/models", **doc.operation("torchserve_list_models", "Registered models (TorchServe management API)",
                                       ok={"application/json": {"schema": doc.component(ModelList)}}))
async def list_models(request: Request) -> Response:
    names = request.app.state.gateway.registry.names()
    return json_response({"models": [{"modelName": n, "modelUrl": n} for n in names]})


_DESCRIBE = {"ok": {"application/json": {"schema": {"type": "array", "items": doc.component(ModelDescription)}}},
             "errors": (404,), "torchserve": True}


@router.get("/models/{name}", **doc.operation("torchserve_describe_model", "Describe a model's versions (TorchServe management API)", parameters=_NAME, **_DESCRIBE))
@router.get("/models/{name}/{version}", **doc.operation("torchserve_describe_model_version", "Describe one version", parameters=_VERSION, **_DESCRIBE))
async def describe_model(request: Request) -> Response:
    registry = request.app.state.gateway.registry
    name, version = request.path_params["name"], request.path_params.get("version")
    entries = [registry.lookup(name, parse_version(name, version))] if version else registry.versions(name)
    for entry in entries:
        await health.check(entry)
    return json_response([_description(e) for e in entries])

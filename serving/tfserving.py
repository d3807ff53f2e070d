"""TF Serving's REST API: model status, signature metadata, `:predict` in the row and the columnar form
(the wire form is `codecs.tfserving`)."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from crossdeploy.repository import V2_TO_TF

from . import health
from . import openapi as doc
from .codecs import tfserving as codec
from .codecs.tfserving import SIGNATURE
from .core import Gateway, parse_version
from .error_responses import json_response
from .http import read_body, require_media
from .registry import Served
from .routing import protocol_router

router = protocol_router("TF Serving REST")


class PredictResponse(BaseModel):
    predictions: Any | None = Field(None, description="row format: one entry per example")
    outputs: Any | None = Field(None, description="columnar format: the batch per named output")


class VersionStatus(BaseModel):
    version: str
    state: str = Field(description="AVAILABLE or END")
    status: dict[str, str]


class ModelStatus(BaseModel):
    model_version_status: list[VersionStatus]


class SignatureMetadata(BaseModel):
    model_spec: dict[str, str]
    metadata: dict[str, Any]


_PREDICT = {"ok": {"application/json": {"schema": doc.component(PredictResponse)}}, "errors": (400, 404, 408, 413, 415, 500, 503, 504),
            "body": doc.json_body(doc.component("PredictRequest", {
                "type": "object", "oneOf": [{"required": ["instances"]}, {"required": ["inputs"]}],
                "properties": {"signature_name": {"enum": [None, "", SIGNATURE]},
                               "instances": {"description": "row format: one entry per example (or objects naming the inputs)",
                                             "anyOf": [doc.ref("ServedBatch"), {"type": "array", "minItems": 1,
                                                                                 "items": doc.ref("ServedInstance")}]},
                               "inputs": {"description": "columnar format: the batch (per named input)",
                                          "anyOf": [doc.ref("ServedBatch"), doc.ref("ServedColumns")]}}}))}


async def _read(request: Request, limit: int) -> bytes:
    require_media(request, ("application/json",))
    return await read_body(request, limit)


@router.post("/v1/models/{name}:predict", **doc.operation(
    "tfserving_predict", "Predict (row or columnar format)", parameters=(doc.MODEL,), **_PREDICT))
@router.post("/v1/models/{name}/versions/{version}:predict", **doc.operation(
    "tfserving_predict_version", "Predict on one version", parameters=(doc.MODEL, doc.VERSION), **_PREDICT))
async def predict(request: Request) -> Response:
    gateway: Gateway = request.app.state.gateway
    params = request.path_params
    body = await gateway.receive("tfserving", params["name"], _read(request, gateway.max_body_bytes))
    parsed: dict = {}

    def decode(served: Served):
        document = parsed["document"] = codec.parse_request(body)
        return codec.decode(document, served.config.inputs, gateway.max_batch)

    def encode(served: Served, outputs):
        return codec.encode(outputs, codec.form_of(parsed["document"]))

    return Response(await gateway.handle("tfserving", params["name"], params.get("version"), decode, encode),
                    media_type="application/json")


def _status(entry: Served) -> dict:
    if entry.ready:  # the message still says what a ready version should tell (its artifact changed on disk)
        return {"version": str(entry.version), "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": entry.reason}}
    return {"version": str(entry.version), "state": "END", "status": {"error_code": "UNAVAILABLE", "error_message": entry.reason}}


_STATUS = {"ok": {"application/json": {"schema": doc.component(ModelStatus)}}, "errors": (404,)}


@router.get("/v1/models/{name}", **doc.operation(
    "tfserving_model_status", "Version status of every version", parameters=(doc.MODEL,), **_STATUS))
@router.get("/v1/models/{name}/versions/{version}", **doc.operation(
    "tfserving_model_version_status", "Status of one version", parameters=(doc.MODEL, doc.VERSION), **_STATUS))
async def model_status(request: Request) -> Response:
    gateway: Gateway = request.app.state.gateway
    name, version = request.path_params["name"], request.path_params.get("version")
    if version is None:
        entries = gateway.registry.versions(name)
    else:
        entries = [gateway.registry.lookup(name, parse_version(name, version))]
    for entry in entries:
        await health.check(entry)
    return json_response({"model_version_status": [_status(e) for e in reversed(entries)]})


def _tensor_info(spec, prefix: str) -> dict:
    return {"dtype": V2_TO_TF.get(spec.datatype, "DT_INVALID"), "name": f"{prefix}_{spec.name}:0",
            "tensor_shape": {"dim": [{"size": str(d), "name": ""} for d in spec.shape], "unknown_rank": False}}


_SIGNATURE = {"ok": {"application/json": {"schema": doc.component(SignatureMetadata)}}, "errors": (404, 503)}


@router.get("/v1/models/{name}/metadata", **doc.operation(
    "tfserving_model_metadata", "signature_def of the latest version", parameters=(doc.MODEL,), **_SIGNATURE))
@router.get("/v1/models/{name}/versions/{version}/metadata", **doc.operation(
    "tfserving_model_version_metadata", "signature_def of one version", parameters=(doc.MODEL, doc.VERSION), **_SIGNATURE))
async def model_metadata(request: Request) -> Response:
    gateway: Gateway = request.app.state.gateway
    name, version = request.path_params["name"], request.path_params.get("version")
    entry = gateway.registry.get(name, parse_version(name, version))
    signature = {
        "inputs": {s.name: _tensor_info(s, SIGNATURE) for s in entry.config.inputs},
        "outputs": {s.name: _tensor_info(s, "StatefulPartitionedCall") for s in entry.config.outputs},
        "method_name": "tensorflow/serving/predict", "defaults": {},
    }
    return json_response({
        "model_spec": {"name": name, "signature_name": "", "version": str(entry.version)},
        "metadata": {"signature_def": {"signature_def": {SIGNATURE: signature}}},
    })

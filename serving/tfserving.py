"""TF Serving's REST API: model status, signature metadata, :predict in the row and the columnar format."""

from __future__ import annotations

from typing import Any

import numpy as np
from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from crossdeploy.errors import InvalidInput

from .core import Gateway, parse_version
from crossdeploy.repository import V2_TO_NUMPY, V2_TO_TF
from .http import json_response, openapi_body, parse_json, read_body, require_media
from .kserve_v2 import gateway, json_tensor
from .registry import Served

SIGNATURE = "serving_default"
router = APIRouter(tags=["TF Serving REST"])
inference = APIRouter(tags=["TF Serving REST"])  # the hot routes, mounted before everything else


class PredictRequest(BaseModel):
    signature_name: str | None = Field(None, examples=[SIGNATURE])
    instances: list[Any] | None = Field(None, description="row format: one entry per example")
    inputs: Any | None = Field(None, description="columnar format: the batch per named input")


def _status(entry: Served) -> dict:
    if entry.ready:
        return {"version": str(entry.version), "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
    return {"version": str(entry.version), "state": "END", "status": {"error_code": "UNAVAILABLE", "error_message": entry.reason}}


@router.get("/v1/models/{name}", summary="Version status of every version")
@router.get("/v1/models/{name}/versions/{version}", summary="Status of one version")
async def model_status(name: str, version: str | None = None, gw: Gateway = Depends(gateway)):
    if version is None:
        entries = gw.registry.versions(name)
    else:
        entries = [gw.registry.lookup(name, parse_version(name, version))]
    return json_response({"model_version_status": [_status(e) for e in reversed(entries)]})


def _tensor_info(spec, prefix: str) -> dict:
    return {"dtype": V2_TO_TF.get(spec.datatype, "DT_INVALID"), "name": f"{prefix}_{spec.name}:0",
            "tensor_shape": {"dim": [{"size": str(d), "name": ""} for d in spec.shape], "unknown_rank": False}}


@router.get("/v1/models/{name}/metadata", summary="signature_def of the latest version")
@router.get("/v1/models/{name}/versions/{version}/metadata", summary="signature_def of one version")
async def model_metadata(name: str, version: str | None = None, gw: Gateway = Depends(gateway)):
    entry = gw.registry.get(name, parse_version(name, version))
    signature = {
        "inputs": {s.name: _tensor_info(s, SIGNATURE) for s in entry.config.inputs},
        "outputs": {s.name: _tensor_info(s, "StatefulPartitionedCall") for s in entry.config.outputs},
        "method_name": "tensorflow/serving/predict", "defaults": {},
    }
    return json_response({
        "model_spec": {"name": name, "signature_name": "", "version": str(entry.version)},
        "metadata": {"signature_def": {"signature_def": {SIGNATURE: signature}}},
    })


def decode_predict(body: dict, served: Served) -> tuple[dict[str, np.ndarray], str]:
    """(inputs, "row" | "columnar"). A single-input model accepts bare values as well as {name: value}."""
    if not isinstance(body, dict):
        raise InvalidInput("the request must be a JSON object with 'instances' or 'inputs'")
    signature = body.get("signature_name")
    if signature not in (None, "", SIGNATURE):
        raise InvalidInput(f"serving signature name: \"{signature}\" not found in signature def")
    if ("instances" in body) == ("inputs" in body):
        raise InvalidInput("the request must have exactly one of 'instances' (row format) or 'inputs' (columnar format)")
    specs = {spec.name: spec for spec in served.config.inputs}
    if "instances" in body:
        instances = body["instances"]
        if not isinstance(instances, list) or not instances:
            raise InvalidInput("'instances' must be a non-empty list")
        if all(isinstance(i, dict) for i in instances):
            columns = {}
            for name in specs:
                if any(name not in i for i in instances):
                    raise InvalidInput(f"every instance needs the input '{name}'")
                columns[name] = [i[name] for i in instances]
            if extra := sorted({k for i in instances for k in i} - set(specs)):
                raise InvalidInput(f"unexpected input(s) {extra}, the signature has {sorted(specs)}")
        elif len(specs) == 1:
            columns = {next(iter(specs)): instances}
        else:
            raise InvalidInput(f"a model with inputs {sorted(specs)} needs instances as objects naming them")
        kind = "row"
    else:
        inputs = body["inputs"]
        if isinstance(inputs, dict):
            if set(inputs) != set(specs):
                raise InvalidInput(f"'inputs' names {sorted(inputs)}, the signature has {sorted(specs)}")
            columns = inputs
        elif len(specs) == 1:
            columns = {next(iter(specs)): inputs}
        else:
            raise InvalidInput(f"a model with inputs {sorted(specs)} needs 'inputs' as an object naming them")
        kind = "columnar"
    return {name: json_tensor(name, value, V2_TO_NUMPY[specs[name].datatype]) for name, value in columns.items()}, kind


def encode_predict(outputs: dict[str, np.ndarray], kind: str) -> dict:
    if kind == "row":
        if len(outputs) == 1:
            return {"predictions": next(iter(outputs.values()))}
        batch = next(iter(outputs.values())).shape[0]
        return {"predictions": [{k: v[i] for k, v in outputs.items()} for i in range(batch)]}
    return {"outputs": next(iter(outputs.values())) if len(outputs) == 1 else outputs}


@inference.post("/v1/models/{name}:predict", summary="Predict (row or columnar format)",
                openapi_extra=openapi_body(PredictRequest, path=("name",)))
@inference.post("/v1/models/{name}/versions/{version}:predict", summary="Predict on one version",
                openapi_extra=openapi_body(PredictRequest, path=("name", "version")))
async def predict(request: Request):
    name, version, gw = request.path_params["name"], request.path_params.get("version"), request.app.state.gateway
    require_media(request, ("application/json",))
    body = await read_body(request, request.app.state.settings.max_body_bytes)
    kind = {}

    def decode(served: Served) -> dict[str, np.ndarray]:
        inputs, kind["format"] = decode_predict(parse_json(body), served)
        return inputs

    response = await gw.handle("tfserving", name, version, decode, lambda served, outputs: encode_predict(outputs, kind["format"]))
    return json_response(response)

"""KServe V2 / Open Inference Protocol routes, as Triton speaks them: health, server and model metadata,
inference (JSON tensors and the binary tensor data extension, with the classification extension),
statistics and configuration (the model repository extension: repository_api.py). The wire forms are `codecs.v2_json` and
`codecs.v2_binary`; every request runs through the one `Gateway`."""

from __future__ import annotations

import orjson
from fastapi import Request
from fastapi.responses import Response

from crossdeploy import __version__
from crossdeploy.repository import PLATFORMS

from . import health
from . import openapi as doc
from . import v2_schemas as schemas
from .codecs import v2_binary, v2_json
from .codecs.v2_binary import HEADER_LENGTH
from .core import Gateway, parse_version
from .error_responses import json_response
from .http import read_body, require_media
from .registry import Served
from .routing import protocol_router

EXTENSIONS = ["binary_tensor_data", "classification", "statistics", "model_repository", "model_configuration"]
MEDIA = ("application/json", "application/octet-stream", "application/vnd.kserve+json")
router = protocol_router("KServe V2 / Open Inference Protocol")

_LENGTH = {"description": "bytes of JSON header before the binary tensors (binary tensor data extension)",
           "schema": {"type": "integer", "minimum": 0}}
_BINARY = {"type": "string", "format": "binary",
           "description": f"a JSON header of {HEADER_LENGTH} bytes, then the tensors' raw bytes in declared order"}
_INFER = {
    "ok": {"application/json": {"schema": doc.component(schemas.InferenceResponse)}, "application/octet-stream": {"schema": _BINARY}},
    "ok_headers": {HEADER_LENGTH: {"description": "present when outputs are binary", "schema": {"type": "integer"}}},
    "errors": (400, 404, 408, 413, 415, 500, 503, 504),
    "body": {**{m: {"schema": doc.component("InferenceRequest", schemas.INFERENCE_REQUEST)} for m in ("application/json", "application/vnd.kserve+json")},
             "application/octet-stream": {"schema": _BINARY}},
}
_HEADER = {"name": HEADER_LENGTH, "in": "header", "required": False, **_LENGTH}


def _gateway(request: Request) -> Gateway:
    return request.app.state.gateway


async def _read(request: Request, limit: int) -> bytes:
    require_media(request, MEDIA)
    return await read_body(request, limit)


@router.post("/v2/models/{name}/infer", **doc.operation(
    "v2_infer", "Inference (JSON or binary tensor data)", parameters=(doc.MODEL, _HEADER), **_INFER))
@router.post("/v2/models/{name}/versions/{version}/infer", **doc.operation(
    "v2_infer_version", "Inference on one version", parameters=(doc.MODEL, doc.VERSION, _HEADER), **_INFER))
async def infer(request: Request) -> Response:
    gateway: Gateway = request.app.state.gateway
    params = request.path_params
    body = await gateway.receive("v2", params["name"], _read(request, gateway.max_body_bytes))
    header_length = request.headers.get(HEADER_LENGTH)
    parsed: dict = {}

    def decode(served: Served):
        document, binary = v2_binary.split(body, header_length)
        parsed["document"] = document
        parsed["choices"] = v2_json.output_choices(document, served.output_names)
        return v2_json.decode(document, served.config.inputs, gateway.max_batch, binary)

    def encode(served: Served, outputs):
        header = v2_json.response_header(served.name, served.version_label, parsed["document"].get("id"))
        return v2_binary.encode(header, outputs, parsed["choices"])

    content, length = await gateway.handle("v2", params["name"], params.get("version"), decode, encode)
    if length is None:
        return Response(content, media_type="application/json")
    return Response(content, media_type="application/octet-stream", headers={HEADER_LENGTH: str(length)})


@router.get("/v2", **doc.operation("v2_server_metadata", "Server metadata",
                                   ok={"application/json": {"schema": doc.component(schemas.ServerMetadata)}}))
async def server_metadata(request: Request) -> Response:
    return json_response({"name": "crossdeploy", "version": __version__, "extensions": EXTENSIONS})


@router.get("/v2/health/live", **doc.operation("v2_live", "Liveness",
                                               ok={"application/json": {"schema": doc.component(schemas.Liveness)}}))
async def live(request: Request) -> Response:
    return json_response({"live": True})


_READY = {"application/json": {"schema": doc.component(schemas.ServerReadiness)}}


@router.get("/v2/health/ready", **doc.operation(
    "v2_ready", "Readiness: every version that loaded answers its health probe (a real inference)", ok=_READY,
    also={503: {"description": "a loaded version is not ready now, or none loaded", "content": _READY}}))
async def ready(request: Request) -> Response:
    state = getattr(request.app.state, "gateway", None)
    entries = await health.check_all(state.registry) if state else []
    ready_count = sum(entry.ready for entry in entries)
    is_ready = health.server_ready(entries)
    body = {"ready": is_ready, "models_ready": ready_count, "models_unavailable": len(entries) - ready_count}
    return json_response(body, 200 if is_ready else 503)


def _version(request: Request) -> tuple[str, int | None]:
    name = request.path_params["name"]
    return name, parse_version(name, request.path_params.get("version"))


def _metadata(gateway: Gateway, entry: Served) -> dict:
    config = entry.config
    if config is None:
        return {"name": entry.name, "versions": [], "platform": "", "inputs": [], "outputs": []}
    return {"name": entry.name, "versions": [str(e.version) for e in gateway.registry.versions(entry.name)],
            "platform": PLATFORMS.get(config.format, config.format),
            "inputs": [{"name": s.name, "datatype": s.datatype, "shape": list(s.shape)} for s in config.inputs],
            "outputs": [{"name": s.name, "datatype": s.datatype, "shape": list(s.shape)} for s in config.outputs]}


_STATS = {"application/json": {"schema": doc.component(schemas.Statistics)}}


@router.get("/v2/models/stats", **doc.operation("v2_all_stats", "Statistics of every model version (Triton's shape)", ok=_STATS))
async def all_stats(request: Request) -> Response:
    return json_response({"model_stats": [_stat(entry) for entry in _gateway(request).registry.all()]})


_METADATA = {"ok": {"application/json": {"schema": doc.component(schemas.ModelMetadata)}}, "errors": (404,)}


@router.get("/v2/models/{name}", **doc.operation("v2_model_metadata", "Model metadata", parameters=(doc.MODEL,), **_METADATA))
@router.get("/v2/models/{name}/versions/{version}", **doc.operation(
    "v2_model_version_metadata", "Model version metadata", parameters=(doc.MODEL, doc.VERSION), **_METADATA))
async def model_metadata(request: Request) -> Response:
    gateway = _gateway(request)
    return json_response(_metadata(gateway, gateway.registry.lookup(*_version(request))))


_MODEL_READY = {"application/json": {"schema": doc.component(schemas.ModelReadiness)}}
_READINESS = {"ok": _MODEL_READY, "errors": (404,), "also": {503: {"description": "not ready", "content": _MODEL_READY}}}


@router.get("/v2/models/{name}/ready", **doc.operation(
    "v2_model_ready", "Model readiness (200 ready, 503 not)", parameters=(doc.MODEL,), **_READINESS))
@router.get("/v2/models/{name}/versions/{version}/ready", **doc.operation(
    "v2_model_version_ready", "Model version readiness", parameters=(doc.MODEL, doc.VERSION), **_READINESS))
async def model_ready(request: Request) -> Response:
    name, version = _version(request)
    entry = _gateway(request).registry.lookup(name, version)
    await health.check(entry)
    body = {"name": name, "version": str(entry.version), "ready": entry.ready}
    if not entry.ready:
        body["error"] = f"model '{name}' is not ready: {entry.reason}"
    elif entry.reason:  # ready, with something to know (its artifact changed on disk, a reload failed)
        body["reason"] = entry.reason
    return json_response(body, 200 if entry.ready else 503)


_CONFIG = {"ok": {"application/json": {"schema": doc.component(schemas.ModelConfiguration)}}, "errors": (404, 503)}


@router.get("/v2/models/{name}/config", **doc.operation(
    "v2_model_config", "Model configuration (Triton fields + the crossdeploy config)", parameters=(doc.MODEL,), **_CONFIG))
@router.get("/v2/models/{name}/versions/{version}/config", **doc.operation(
    "v2_model_version_config", "Model version configuration", parameters=(doc.MODEL, doc.VERSION), **_CONFIG))
async def model_config(request: Request) -> Response:
    name, version = _version(request)
    gateway = _gateway(request)
    entry = gateway.registry.lookup(name, version)
    config = entry.config
    if config is None:
        return json_response({"error": f"model '{name}' has no readable config: {entry.reason}"}, 503)
    triton = {
        "name": name, "platform": PLATFORMS.get(config.format, config.format), "backend": config.runtime.tool,
        "max_batch_size": 0,  # the batch axis is explicit in the shapes (-1), as Triton writes non-batching models
        "input": [{"name": s.name, "data_type": f"TYPE_{s.datatype}", "dims": list(s.shape)} for s in config.inputs],
        "output": [{"name": s.name, "data_type": f"TYPE_{s.datatype}", "dims": list(s.shape)} for s in config.outputs],
        "version_policy": {"specific": {"versions": [e.version for e in gateway.registry.versions(name)]}},
    }
    return json_response({**triton, "crossdeploy": orjson.loads(config.model_dump_json())})


def _stat(entry: Served) -> dict:
    s = entry.stats
    return {
        "name": entry.name, "version": str(entry.version), "last_inference": s.last_inference_ms,
        "inference_count": s.inference_count, "execution_count": s.execution_count,
        "inference_stats": {**{phase: {"count": v.count, "ns": v.ns} for phase, v in s.phases.items()},
                            "cache_hit": {"count": 0, "ns": 0}, "cache_miss": {"count": 0, "ns": 0}},
        "batch_stats": [],
    }


@router.get("/v2/models/{name}/stats", **doc.operation(
    "v2_model_stats", "Model statistics (Triton's shape)", parameters=(doc.MODEL,), ok=_STATS, errors=(404,)))
@router.get("/v2/models/{name}/versions/{version}/stats", **doc.operation(
    "v2_model_version_stats", "Model version statistics", parameters=(doc.MODEL, doc.VERSION), ok=_STATS, errors=(404,)))
async def model_stats(request: Request) -> Response:
    name, version = _version(request)
    registry = _gateway(request).registry
    entries = [registry.lookup(name, version)] if "version" in request.path_params else registry.versions(name)
    return json_response({"model_stats": [_stat(entry) for entry in entries]})

"""KServe V2 / Open Inference Protocol, as Triton speaks it: JSON tensors, the binary tensor data extension,
the classification extension, statistics, the model repository extension.

`decode_*` and `encode_*` translate between the wire and numpy; everything else is the shared gateway core.
"""

from __future__ import annotations

import math
import struct
from typing import Any

import numpy as np
import orjson
from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from pydantic import BaseModel, Field

from crossdeploy import __version__
from crossdeploy.errors import InvalidInput

from .core import Gateway, parse_version
from crossdeploy.repository import NUMPY_TO_V2, PLATFORMS, V2_TO_NUMPY
from .http import json_response, openapi_body, parse_json, read_body, require_media
from .registry import Served

HEADER_LENGTH = "Inference-Header-Content-Length"
EXTENSIONS = ["binary_tensor_data", "classification", "statistics", "model_repository", "model_configuration"]
MEDIA = ("application/json", "application/octet-stream", "application/vnd.kserve+json")

router = APIRouter(tags=["KServe V2 / Open Inference Protocol"])
inference = APIRouter(tags=["KServe V2 / Open Inference Protocol"])  # the hot routes, mounted before everything else


# Typed models: what /docs shows. The infer route parses with orjson (binary bodies are not JSON).
class Tensor(BaseModel):
    name: str
    shape: list[int]
    datatype: str = Field(examples=["FP32"])
    parameters: dict[str, Any] | None = Field(None, description="binary_data_size for the binary extension")
    data: list[Any] | None = Field(None, description="row-major values, flat or nested")


class RequestedOutput(BaseModel):
    name: str
    parameters: dict[str, Any] | None = Field(None, description="binary_data: bool, classification: top-k")


class InferenceRequest(BaseModel):
    id: str | None = None
    parameters: dict[str, Any] | None = Field(None, description="binary_data_output: bool")
    inputs: list[Tensor]
    outputs: list[RequestedOutput] | None = None


class InferenceResponse(BaseModel):
    model_name: str
    model_version: str
    id: str | None = None
    outputs: list[Tensor]


class TensorMetadata(BaseModel):
    name: str
    datatype: str
    shape: list[int]


class ModelMetadata(BaseModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]


class ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str]


async def gateway(request: Request) -> Gateway:
    return request.app.state.gateway


# ---------------------------------------------------------------------------------------------- decoding
def split_body(body: bytes, header_length: str | None) -> tuple[dict, bytes]:
    """The binary extension: a JSON header of `Inference-Header-Content-Length` bytes, then raw tensors."""
    if header_length is None:
        header, binary = body, b""
    else:
        if not header_length.strip().isdigit() or int(header_length) > len(body):
            raise InvalidInput(f"{HEADER_LENGTH} is {header_length!r}, the body has {len(body)} bytes")
        header, binary = body[: int(header_length)], body[int(header_length) :]
    request = parse_json(header)
    if not isinstance(request, dict):
        raise InvalidInput("the inference request must be a JSON object")
    return request, binary


def _shape(name: str, shape: Any, expected: tuple[int, ...], max_batch: int) -> list[int]:
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape):
        raise InvalidInput(f"input '{name}': 'shape' must be a list of integers, got {shape!r}")
    if any(d < 0 for d in shape):
        raise InvalidInput(f"input '{name}': shape {shape} has a negative dimension")
    if len(shape) != len(expected) or any(e not in (-1, d) for e, d in zip(expected, shape)):
        raise InvalidInput(f"input '{name}': shape {shape} does not match the model's {list(expected)}")
    if shape[0] > max_batch:
        raise InvalidInput(f"input '{name}': batch {shape[0]} is above the maximum of {max_batch}")
    return shape


def json_tensor(name: str, data: Any, dtype: np.dtype, shape: list[int] | None = None) -> np.ndarray:
    """JSON numbers (flat or nested) to an array of `dtype`; strings, nulls and ragged lists are refused."""
    try:
        array = np.asarray(data)
    except (ValueError, TypeError) as exc:
        raise InvalidInput(f"input '{name}': data is not a regular array: {str(exc).splitlines()[0]}") from exc
    if array.dtype.kind not in "biuf":
        raise InvalidInput(f"input '{name}': data must be numbers, got {array.dtype.kind == 'U' and 'strings' or 'mixed values'}")
    if shape is not None:
        if array.size != math.prod(shape):
            raise InvalidInput(f"input '{name}': shape {shape} needs {math.prod(shape)} values, data has {array.size}")
        array = array.reshape(shape)
    with np.errstate(over="ignore", invalid="ignore"):
        return array.astype(dtype, copy=False)


def decode_inputs(request: dict, binary: bytes, served: Served, max_batch: int) -> dict[str, np.ndarray]:
    tensors = request.get("inputs")
    if not isinstance(tensors, list) or not tensors:
        raise InvalidInput("'inputs' must be a non-empty list of tensors")
    expected = {spec.name: spec for spec in served.config.inputs}
    arrays: dict[str, np.ndarray] = {}
    offset = 0
    for index, tensor in enumerate(tensors):
        if not isinstance(tensor, dict) or not isinstance(tensor.get("name"), str):
            raise InvalidInput(f"inputs[{index}] must be an object with a string 'name'")
        name = tensor["name"]
        if name not in expected:
            raise InvalidInput(f"unexpected inference input '{name}' for model '{served.name}', expected {sorted(expected)}")
        if name in arrays:
            raise InvalidInput(f"input '{name}' is given twice")
        spec = expected[name]
        if tensor.get("datatype") != spec.datatype:
            raise InvalidInput(f"input '{name}': datatype is {tensor.get('datatype')!r}, model '{served.name}' expects {spec.datatype!r}")
        shape = _shape(name, tensor.get("shape"), spec.shape, max_batch)
        dtype = V2_TO_NUMPY[spec.datatype]
        parameters = tensor.get("parameters") or {}
        size = parameters.get("binary_data_size") if isinstance(parameters, dict) else None
        if size is not None:
            wanted = math.prod(shape) * dtype.itemsize
            if "data" in tensor:
                raise InvalidInput(f"input '{name}' has both 'data' and binary_data_size")
            if not isinstance(size, int) or size != wanted:
                raise InvalidInput(f"input '{name}': binary_data_size {size!r} does not match shape {shape} of {spec.datatype} ({wanted} bytes)")
            if offset + size > len(binary):
                raise InvalidInput(f"input '{name}': the body holds {len(binary) - offset} bytes of binary data, {size} declared")
            arrays[name] = np.frombuffer(binary, dtype=dtype, count=math.prod(shape), offset=offset).reshape(shape)
            offset += size
        elif "data" in tensor:
            arrays[name] = json_tensor(name, tensor["data"], dtype, shape)
        else:
            raise InvalidInput(f"input '{name}' has neither 'data' nor a binary_data_size parameter")
    if missing := sorted(set(expected) - set(arrays)):
        raise InvalidInput(f"model '{served.name}' expects input(s) {missing}, not given")
    if offset != len(binary):
        raise InvalidInput(f"{len(binary) - offset} bytes of binary data follow the declared inputs")
    return arrays


# ---------------------------------------------------------------------------------------------- encoding
def classify(array: np.ndarray, k: int) -> np.ndarray:
    """Triton's classification extension: per batch row, the top-k as "score:index" strings."""
    if array.ndim != 2:
        raise InvalidInput(f"classification needs a [batch, classes] output, this one is {list(array.shape)}")
    top = np.argsort(-array, axis=1, kind="stable")[:, :k]
    return np.array([[f"{array[r, i]:f}:{i}" for i in row] for r, row in enumerate(top)], dtype=object)


def _bytes_tensor(strings: np.ndarray) -> bytes:
    return b"".join(struct.pack("<I", len(b)) + b for b in (s.encode() for s in strings.ravel()))


def requested_outputs(request: dict, served: Served) -> list[tuple[str, bool, int]]:
    """(name, binary, top-k) for every output to return, honouring the request's choices."""
    parameters = request.get("parameters") or {}
    binary_default = bool(parameters.get("binary_data_output", False)) if isinstance(parameters, dict) else False
    names = [spec.name for spec in served.config.outputs]
    wanted = request.get("outputs")
    if wanted is None:
        return [(name, binary_default, 0) for name in names]
    if not isinstance(wanted, list):
        raise InvalidInput("'outputs' must be a list")
    chosen = []
    for entry in wanted:
        if not isinstance(entry, dict) or entry.get("name") not in names:
            raise InvalidInput(f"unexpected inference output {entry.get('name') if isinstance(entry, dict) else entry!r} for model '{served.name}', expected {names}")
        params = entry.get("parameters") or {}
        if not isinstance(params, dict):
            raise InvalidInput(f"output '{entry['name']}': 'parameters' must be an object")
        k = params.get("classification", 0)
        if not isinstance(k, int) or isinstance(k, bool) or k < 0:
            raise InvalidInput(f"output '{entry['name']}': classification must be a non-negative integer")
        chosen.append((entry["name"], bool(params.get("binary_data", binary_default)), k))
    return chosen


def encode_response(served: Served, outputs: dict[str, np.ndarray], request: dict,
                    chosen: list[tuple[str, bool, int]]) -> tuple[bytes, int | None]:
    """(body, header length or None): a JSON body, or a JSON header followed by the binary outputs."""
    header: dict[str, Any] = {"model_name": served.name, "model_version": str(served.version)}
    if isinstance(request.get("id"), str):
        header["id"] = request["id"]
    tensors, blobs = [], []
    for name, binary, k in chosen:
        array = outputs[name]
        if k:
            array = classify(array, min(k, array.shape[-1]))
            datatype, raw = "BYTES", _bytes_tensor(array) if binary else None
        else:
            datatype = NUMPY_TO_V2[array.dtype]
            raw = np.ascontiguousarray(array).tobytes() if binary else None
        tensor: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(array.shape)}
        if binary:
            tensor["parameters"] = {"binary_data_size": len(raw)}
            blobs.append(raw)
        else:
            tensor["data"] = array.ravel().tolist() if k else np.ascontiguousarray(array).ravel()
        tensors.append(tensor)
    header["outputs"] = tensors
    encoded = orjson.dumps(header, option=orjson.OPT_SERIALIZE_NUMPY)
    if not blobs:
        return encoded, None
    return encoded + b"".join(blobs), len(encoded)


def decode_response(body: bytes, header_length: int | None) -> dict[str, np.ndarray]:
    """What a client does with our answer (used by /v1/compare to measure the transport's precision)."""
    header = orjson.loads(body if header_length is None else body[:header_length])
    offset, arrays = header_length or 0, {}
    for tensor in header["outputs"]:
        dtype = V2_TO_NUMPY[tensor["datatype"]]
        if "data" in tensor:
            arrays[tensor["name"]] = np.asarray(tensor["data"], dtype=dtype).reshape(tensor["shape"])
        else:
            size = tensor["parameters"]["binary_data_size"]
            arrays[tensor["name"]] = np.frombuffer(body, dtype=dtype, count=size // dtype.itemsize, offset=offset).reshape(tensor["shape"])
            offset += size
    return arrays


# ---------------------------------------------------------------------------------------------- routes
@router.get("/v2", response_model=ServerMetadata, summary="Server metadata")
async def server_metadata():
    return ServerMetadata(name="crossdeploy", version=__version__, extensions=EXTENSIONS)


@router.get("/v2/health/live", summary="Liveness")
async def live():
    return {"live": True}


@router.get("/v2/health/ready", summary="Readiness: models loaded and at least one ready")
async def ready(request: Request):
    state = getattr(request.app.state, "gateway", None)
    entries = state.registry.all() if state else []
    ready_count = sum(entry.ready for entry in entries)
    body = {"ready": ready_count > 0, "models_ready": ready_count, "models_unavailable": len(entries) - ready_count}
    return json_response(body, 200 if ready_count else 503)


def _metadata(gw: Gateway, name: str, version: str | None) -> ModelMetadata:
    entry = gw.registry.lookup(name, parse_version(name, version))
    config = entry.config
    if config is None:
        return ModelMetadata(name=name, versions=[], platform="", inputs=[], outputs=[])
    return ModelMetadata(
        name=name, versions=[str(e.version) for e in gw.registry.versions(name)], platform=PLATFORMS.get(config.format, config.format),
        inputs=[TensorMetadata(name=s.name, datatype=s.datatype, shape=list(s.shape)) for s in config.inputs],
        outputs=[TensorMetadata(name=s.name, datatype=s.datatype, shape=list(s.shape)) for s in config.outputs],
    )


@router.get("/v2/models/stats", summary="Statistics of every model version (Triton's shape)")
async def all_stats(gw: Gateway = Depends(gateway)):
    return {"model_stats": [_stat(entry) for entry in gw.registry.all()]}


@router.get("/v2/models/{name}", response_model=ModelMetadata, summary="Model metadata")
@router.get("/v2/models/{name}/versions/{version}", response_model=ModelMetadata, summary="Model version metadata")
async def model_metadata(name: str, version: str | None = None, gw: Gateway = Depends(gateway)):
    return _metadata(gw, name, version)


@router.get("/v2/models/{name}/ready", summary="Model readiness (200 ready, 503 not)")
@router.get("/v2/models/{name}/versions/{version}/ready", summary="Model version readiness")
async def model_ready(name: str, version: str | None = None, gw: Gateway = Depends(gateway)):
    entry = gw.registry.lookup(name, parse_version(name, version))
    body = {"name": name, "version": str(entry.version), "ready": entry.ready}
    if not entry.ready:
        body["error"] = f"model '{name}' is not ready: {entry.reason}"
    return json_response(body, 200 if entry.ready else 503)


@router.get("/v2/models/{name}/config", summary="Model configuration (Triton fields + the crossdeploy config)")
@router.get("/v2/models/{name}/versions/{version}/config", summary="Model version configuration")
async def model_config(name: str, version: str | None = None, gw: Gateway = Depends(gateway)):
    entry = gw.registry.lookup(name, parse_version(name, version))
    config = entry.config
    if config is None:
        return json_response({"error": f"model '{name}' has no readable config: {entry.reason}"}, 503)
    triton = {
        "name": name, "platform": PLATFORMS.get(config.format, config.format), "backend": config.runtime.tool,
        "max_batch_size": 0,  # the batch axis is explicit in the shapes (-1), as Triton writes non-batching models
        "input": [{"name": s.name, "data_type": f"TYPE_{s.datatype}", "dims": list(s.shape)} for s in config.inputs],
        "output": [{"name": s.name, "data_type": f"TYPE_{s.datatype}", "dims": list(s.shape)} for s in config.outputs],
        "version_policy": {"specific": {"versions": [e.version for e in gw.registry.versions(name)]}},
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


@router.get("/v2/models/{name}/stats", summary="Model statistics (Triton's shape)")
@router.get("/v2/models/{name}/versions/{version}/stats", summary="Model version statistics")
async def model_stats(name: str, version: str | None = None, gw: Gateway = Depends(gateway)):
    entries = [gw.registry.lookup(name, parse_version(name, version))] if version else gw.registry.versions(name)
    return {"model_stats": [_stat(entry) for entry in entries]}


@inference.post("/v2/models/{name}/infer", summary="Inference (JSON or binary tensor data)",
                responses={200: {"model": InferenceResponse}}, openapi_extra=openapi_body(InferenceRequest, MEDIA, ("name",)))
@inference.post("/v2/models/{name}/versions/{version}/infer", summary="Inference on one version",
                responses={200: {"model": InferenceResponse}},
                openapi_extra=openapi_body(InferenceRequest, MEDIA, ("name", "version")))
async def infer(request: Request):
    name, version, gw = request.path_params["name"], request.path_params.get("version"), request.app.state.gateway
    require_media(request, MEDIA)
    body = await read_body(request, request.app.state.settings.max_body_bytes)
    parsed: dict = {}

    def decode(served: Served) -> dict[str, np.ndarray]:
        parsed["request"], binary = split_body(body, request.headers.get(HEADER_LENGTH))
        parsed["chosen"] = requested_outputs(parsed["request"], served)
        return decode_inputs(parsed["request"], binary, served, gw.max_batch)

    def encode(served: Served, outputs: dict[str, np.ndarray]):
        return encode_response(served, outputs, parsed["request"], parsed["chosen"])

    content, header_length = await gw.handle("v2", name, version, decode, encode)
    if header_length is None:
        return Response(content, media_type="application/json")
    return Response(content, media_type="application/octet-stream", headers={HEADER_LENGTH: str(header_length)})


# ---------------------------------------------------------------------------------------------- repository
@router.post("/v2/repository/index", summary="Every model version in the repository and its state")
async def repository_index(request: Request, gw: Gateway = Depends(gateway)):
    body = await read_body(request, 64 * 1024)
    document = parse_json(body) if body.strip() else {}
    if not isinstance(document, dict):
        raise InvalidInput("the repository index request must be a JSON object, e.g. {\"ready\": true}")
    ready_only = bool(document.get("ready"))
    served = {(e.name, e.version): e for e in gw.registry.all()}
    rows = []
    for name in await run_in_threadpool(gw.registry.repository.names):
        entries = [e for (n, _), e in served.items() if n == name]
        if not entries:
            rows.append({"name": name, "version": "", "state": "UNAVAILABLE", "reason": "unloaded"})
        for e in entries:
            rows.append({"name": name, "version": str(e.version), "state": e.state, "reason": e.reason})
    return [r for r in rows if r["state"] == "READY"] if ready_only else rows


@router.post("/v2/repository/models/{name}/load", summary="Load (or reload) a model from the repository")
async def load_model(name: str, gw: Gateway = Depends(gateway)):
    entries = await run_in_threadpool(gw.load, name)
    failed = [e for e in entries if not e.ready]
    if failed:
        return json_response({"error": f"failed to load '{name}': {failed[0].reason}"}, 400)
    return json_response({})


@router.post("/v2/repository/models/{name}/unload", summary="Unload a model")
async def unload_model(name: str, gw: Gateway = Depends(gateway)):
    gw.registry.versions(name)  # 404 for an unknown model
    await run_in_threadpool(gw.unload, name)
    return json_response({})

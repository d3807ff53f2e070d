"""KServe V2's model repository extension: the index of every model version and its state (readable by anyone),
and, with model control "explicit" and the management token, loading and unloading a model (management.py)."""

from __future__ import annotations

from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from crossdeploy.errors import InvalidInput

from . import openapi as doc
from . import v2_schemas as schemas
from .codecs import v2_json
from .core import Gateway
from .error_responses import json_response
from .http import read_body, require_media
from .routing import protocol_router

INDEX_BODY_LIMIT = 64 * 1024
router = protocol_router("KServe V2 / Open Inference Protocol")


def _gateway(request: Request) -> Gateway:
    return request.app.state.gateway


@router.post("/v2/repository/index", **doc.operation(
    "v2_repository_index", "Every model version in the repository and its state",
    ok={"application/json": {"schema": {"type": "array", "items": doc.component(schemas.IndexEntry)}}},
    errors=(400, 408, 413, 415, 503), body=doc.json_body(doc.component(schemas.IndexRequest)), body_required=False))
async def repository_index(request: Request) -> Response:
    gateway = _gateway(request)
    require_media(request, ("application/json",))
    body = await read_body(request, INDEX_BODY_LIMIT)
    document = v2_json.parse_request(body) if body.strip() else {}
    ready_only = document.get("ready")
    if ready_only is not None and not isinstance(ready_only, bool):
        raise InvalidInput(f"'ready' must be true or false, got {ready_only!r}")
    served = {(e.name, e.version): e for e in gateway.registry.all()}
    rows = []
    for name in await run_in_threadpool(gateway.registry.repository.names):
        entries = [e for (n, _), e in served.items() if n == name]
        if not entries:
            rows.append({"name": name, "version": "", "state": "UNAVAILABLE", "reason": "unloaded"})
        for e in entries:
            rows.append({"name": name, "version": str(e.version), "state": e.state, "reason": e.reason})
    return json_response([r for r in rows if r["state"] == "READY"] if ready_only else rows)


_EMPTY = {"application/json": {"schema": doc.component(schemas.Empty)}}
_MANAGED = ("Needs `--model-control-mode explicit` (403 otherwise) and `Authorization: Bearer <management token>` "
            "(401 without it).")


@router.post("/v2/repository/models/{name}/load", **doc.operation(
    "v2_repository_load", "Load (or reload) a model from the repository", parameters=(doc.MODEL,), ok=_EMPTY,
    errors=(400, 401, 403, 404, 503), secured=True, description=_MANAGED))
async def load_model(request: Request) -> Response:
    request.app.state.management.authorize(request)
    name = request.path_params["name"]
    entries = await run_in_threadpool(_gateway(request).load, name)
    failed = [e for e in entries if not e.ready]
    if failed:
        raise InvalidInput(f"failed to load '{name}': {failed[0].reason}")
    return json_response({})


@router.post("/v2/repository/models/{name}/unload", **doc.operation(
    "v2_repository_unload", "Unload a model", parameters=(doc.MODEL,), ok=_EMPTY, errors=(401, 403, 404, 503),
    secured=True, description=_MANAGED))
async def unload_model(request: Request) -> Response:
    request.app.state.management.authorize(request)
    name = request.path_params["name"]
    gateway = _gateway(request)
    gateway.registry.versions(name)  # 404 for an unknown model
    await run_in_threadpool(gateway.unload, name)
    return json_response({})

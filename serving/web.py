"""The page and what it needs from the gateway: `/` (static files, no CDN), test-set samples, the ONNX artifacts the
browser runs with onnxruntime-web, and the parity and latency reports with their charts."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from fastapi import Request
from fastapi.responses import FileResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from crossdeploy.errors import InvalidInput

from . import openapi as doc
from .core import Gateway
from .error_responses import json_response
from .routing import protocol_router

STATIC = Path(__file__).parent / "static"
REPORT_FILES = {"parity": ("parity.json", "parity.png"),
                "latency": ("results.json", "latency_cdf.png", "throughput_vs_concurrency.png", "pathways.png", "breakdown.png")}
router = protocol_router("Web page")


def static_files() -> StaticFiles:
    return StaticFiles(directory=STATIC, check_dir=False)


@router.get("/", include_in_schema=False)
async def index(request: Request):
    return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})


@router.get("/reports/{name}", include_in_schema=False)
async def report_page(request: Request):
    name = request.path_params["name"]
    if name not in REPORT_FILES:
        raise HTTPException(404, f"no report named '{name}' (parity, latency)")
    return FileResponse(STATIC / "report.html", headers={"Cache-Control": "no-cache"})


_samples: dict = {}


def _integer(request: Request, name: str, default: int | None, low: int, high: int | None, rule: str) -> int | None:
    text = request.query_params.get(name)
    if text is None:
        return default
    value = int(text) if re.fullmatch(r"-?[0-9]{1,30}", text) else None
    if value is None or value < low or (high is not None and value > high):
        raise InvalidInput(f"{name} must be {rule}, got {text!r}")
    return value


_SAMPLES = {"type": "object", "required": ["indices", "images", "labels"], "properties": {
    "indices": {"type": "array", "items": {"type": "integer"}}, "images": {"type": "array"},
    "labels": {"type": "array", "items": {"type": "integer"}}}}


@router.get("/v1/samples", **doc.operation(
    "web_samples", "Test-set samples (8x8, 0..16) with their labels, for the page",
    ok={"application/json": {"schema": _SAMPLES}}, errors=(400,), parameters=(
        {"name": "count", "in": "query", "required": False, "schema": {"type": "integer", "minimum": 1, "maximum": 64, "default": 1}},
        {"name": "seed", "in": "query", "required": False, "schema": {"type": "integer", "minimum": 0}})))
async def samples(request: Request):
    count = _integer(request, "count", 1, 1, 64, "an integer between 1 and 64")
    seed = _integer(request, "seed", None, 0, None, "a non-negative integer")
    if not _samples:
        from crossdeploy.models.data import load_split

        split = load_split(seed=0)
        _samples.update(x=split.x_test.astype(np.float32), y=split.y_test.astype(int))
    rng = np.random.default_rng(seed)
    index = rng.choice(len(_samples["y"]), size=count, replace=False)
    return json_response({"indices": index, "images": _samples["x"][index], "labels": _samples["y"][index]})


class OctetStream(Response):
    media_type = "application/octet-stream"


@router.get("/v1/artifacts/{name}/model.onnx", response_class=OctetStream, **doc.operation(
    "web_artifact", "The ONNX file of a variant (what the page runs in the browser)",
    parameters=(doc.path_parameter("name", "an ONNX variant (others: 400)", doc.ref("OnnxVariant")),),
    ok={"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}, errors=(400, 404, 503)))
async def artifact(request: Request):
    gw: Gateway = request.app.state.gateway
    name = request.path_params["name"]
    entry = gw.registry.get(name)
    if entry.config.format != "onnx":
        raise InvalidInput(f"'{name}' is a {entry.config.format} variant; only ONNX variants are served as files")
    source = entry.runtime or entry.remote  # either knows its version record and folder
    record = next(f for f in source.version.files if f.path == "model.onnx")
    return FileResponse(source.directory / record.path, media_type="application/octet-stream",
                        headers={"X-Content-SHA256": record.sha256, "Cache-Control": "no-cache"})


def report_folder(request: Request, name: str) -> Path:
    settings = request.app.state.settings
    if name == "parity":
        return settings.workdir / "reports" / "parity"
    return settings.workdir / "reports" / "bench" / "latest"


@router.get("/v1/reports/{name}/{file}", **doc.operation(
    "web_report_file", "A report file: parity.json/png, or the latest latency run's results and charts",
    ok={"application/json": {"schema": {}}, "image/png": {"schema": {"type": "string", "format": "binary"}}},
    errors=(404,), parameters=(
        doc.path_parameter("name", "which report", {"type": "string", "enum": sorted(REPORT_FILES)}),
        doc.path_parameter("file", "which file of it", {"type": "string", "enum": sorted({f for fs in REPORT_FILES.values() for f in fs})}))))
async def report_file(request: Request):
    name, file = request.path_params["name"], request.path_params["file"]
    if name not in REPORT_FILES or file not in REPORT_FILES[name]:
        raise HTTPException(404, f"no report file {name}/{file}")
    path = report_folder(request, name) / file
    if not path.is_file():
        command = "crossdeploy parity" if name == "parity" else "make bench"
        return json_response({"error": f"no {name} report yet: run `{command}`"}, 404)
    if file.endswith(".json"):
        return Response(path.read_bytes(), media_type="application/json", headers={"Cache-Control": "no-cache"})
    return FileResponse(path, media_type="image/png", headers={"Cache-Control": "no-cache"})

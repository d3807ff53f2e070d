"""The page and what it needs from the gateway: `/` (static files, no CDN), test-set samples, the ONNX artifacts the
browser runs with onnxruntime-web, and the parity and latency reports with their charts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, Response
from fastapi.staticfiles import StaticFiles

from starlette.exceptions import HTTPException

from crossdeploy.errors import InvalidInput

from .core import Gateway
from .http import json_response

STATIC = Path(__file__).parent / "static"
REPORT_FILES = {"parity": ("parity.json", "parity.png"),
                "latency": ("results.json", "latency_cdf.png", "throughput_vs_concurrency.png", "pathways.png", "breakdown.png")}
router = APIRouter(tags=["Web page"])


def static_files() -> StaticFiles:
    return StaticFiles(directory=STATIC, check_dir=False)


@router.get("/", include_in_schema=False)
async def index():
    return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})


@router.get("/reports/{name}", include_in_schema=False)
async def report_page(name: str):
    if name not in REPORT_FILES:
        raise HTTPException(404, f"no report named '{name}' (parity, latency)")
    return FileResponse(STATIC / "report.html", headers={"Cache-Control": "no-cache"})


_samples: dict = {}


@router.get("/v1/samples", summary="Test-set samples (8x8, 0..16) with their labels, for the page")
async def samples(count: int = 1, seed: int | None = None):
    if not 1 <= count <= 64:
        raise InvalidInput("count must be between 1 and 64")
    if seed is not None and seed < 0:
        raise InvalidInput("seed must be a non-negative integer")
    if not _samples:
        from crossdeploy.models.data import load_split

        split = load_split(seed=0)
        _samples.update(x=split.x_test.astype(np.float32), y=split.y_test.astype(int))
    rng = np.random.default_rng(seed)
    index = rng.choice(len(_samples["y"]), size=count, replace=False)
    return json_response({"indices": index, "images": _samples["x"][index], "labels": _samples["y"][index]})


@router.get("/v1/artifacts/{name}/model.onnx", summary="The ONNX file of a variant (what the page runs in the browser)")
async def artifact(request: Request, name: str):
    gw: Gateway = request.app.state.gateway
    entry = gw.registry.get(name)
    if entry.config.format != "onnx":
        raise InvalidInput(f"'{name}' is a {entry.config.format} variant; only ONNX variants are served as files")
    record = next(f for f in entry.runtime.version.files if f.path == "model.onnx")
    return FileResponse(entry.runtime.directory / record.path, media_type="application/octet-stream",
                        headers={"X-Content-SHA256": record.sha256, "Cache-Control": "no-cache"})


def report_folder(request: Request, name: str) -> Path:
    settings = request.app.state.settings
    if name == "parity":
        return settings.workdir / "reports" / "parity"
    return settings.workdir / "reports" / "bench" / "latest"


@router.get("/v1/reports/{name}/{file}", summary="A report file: parity.json/png, or the latest latency run's results and charts")
async def report_file(request: Request, name: str, file: str):
    if name not in REPORT_FILES or file not in REPORT_FILES[name]:
        raise HTTPException(404, f"no report file {name}/{file}")
    path = report_folder(request, name) / file
    if not path.is_file():
        command = "crossdeploy parity" if name == "parity" else "make bench"
        return json_response({"error": f"no {name} report yet: run `{command}`"}, 404)
    if file.endswith(".json"):
        return Response(path.read_bytes(), media_type="application/json", headers={"Cache-Control": "no-cache"})
    return FileResponse(path, media_type="image/png", headers={"Cache-Control": "no-cache"})


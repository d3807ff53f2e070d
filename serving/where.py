"""The page's "where?": for one drawn digit, where along a variant's conversion chain its numbers first leave the
tolerance, with the error-vs-depth plot.

The diagnosis is `crossdeploy diverge VARIANT --inputs <the digit>` run as a child process: it loads the source
model and every artifact of the chain (torch, TF, the converters' outputs), which the gateway must neither import
(serving never imports export) nor keep in its own memory. One diagnosis runs at a time (a second caller gets 503
and Retry-After), each is bounded in time, and its result is kept under <workdir>/reports/where/ (the most recent
KEPT), keyed by the variant's version and the digit, so asking again for the same digit costs nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import shutil
import sys
from pathlib import Path

import numpy as np
from fastapi import Request
from fastapi.responses import FileResponse

from crossdeploy.errors import CrossdeployError, InferenceFailed, InferenceTimeout, InvalidInput, Overloaded
from crossdeploy.repository import EAGER_FORMAT, V2_TO_NUMPY

from . import openapi as doc
from .codecs import tensors, tfserving
from .core import Gateway
from .error_responses import json_response
from .routing import protocol_router

router = protocol_router("Web page")
TIMEOUT_S = 180.0  # a cold diagnosis of the longest chain (torch -> ONNX -> TFLite) takes ~15 s on 2 busy cores
KEY = re.compile(r"[0-9a-f]{20}")
KEPT = 256  # diagnoses kept on disk (about 100 KB each), the oldest removed first
LOG_SUFFIX = re.compile(r"\s*\(framework output: [^)]*\)\s*$")
_running = asyncio.Lock()


class DiagnosisBusy(Overloaded):
    def __init__(self, retry_after: int):
        self.limit, self.retry_after = 1, retry_after
        CrossdeployError.__init__(self, f"another diagnosis is running; retry after {retry_after} s")


class DiagnosisTimeout(InferenceTimeout):
    def __init__(self, name: str, seconds: float):
        self.name, self.seconds = name, seconds
        CrossdeployError.__init__(self, f"the diagnosis of '{name}' took longer than {seconds:g} s and was stopped")


_RESPONSE = {"type": "object", "required": ["variant", "version", "verdicts", "hops", "plot"], "properties": {
    "variant": {"type": "string"}, "chain": {"type": "array", "items": {"type": "string"}},
    "version": {"type": "integer", "description": "the version diagnosed: the repository's latest"},
    "samples": {"type": ["integer", "null"], "description": "inputs run through the chain (1: the one posted)"},
    "verdicts": {"type": "array", "items": {"type": "string"}}, "hops": {"type": "array", "items": {"type": "object"}},
    "plot": {"type": "string", "description": "where the error-vs-depth PNG is"}}}
CONVERTED = doc.path_parameter("name", "a converted variant (its eager reference has no chain: 400)",
                               doc.ref("ConvertedVariant"))
_BODY = {"type": "object", "required": ["image"], "properties": {"image": doc.ref("ServedExample")},
         "description": "one input shaped like the variant's, without the batch axis (the page's 8x8 digit)"}


def _image(payload: bytes, spec) -> np.ndarray:
    """One input, decoded by the codecs' own rules (numbers only, in the type's range) against the signature."""
    document = tfserving.parse_request(payload)  # a JSON object, or a 400
    if "image" not in document:
        raise InvalidInput("the body needs 'image': one input shaped like the variant's, without the batch axis")
    image = tensors.json_array("image", document["image"], np.dtype(V2_TO_NUMPY[spec.datatype]))
    want = tuple(spec.shape[1:])
    if image.shape != want:
        raise InvalidInput(f"'image' must be {' x '.join(map(str, want))} numbers, got shape {image.shape}")
    return tensors.check_values("image", image)[None]


def _failure(name: str, stderr: str) -> CrossdeployError:
    """The input was checked here and the variant has a chain: whatever stops the child is the server's fault (a
    missing upstream variant, an artifact that does not load), said in its own one line."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    said = next((line.split("error:", 1)[1] for line in reversed(lines) if line.startswith("crossdeploy: error:")),
                lines[-1] if lines else "no output")
    return InferenceFailed(name, "the diagnosis failed: " + LOG_SUFFIX.sub("", said).strip()[:300])


def _discard(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)


def _prune(root: Path) -> None:
    """Only the KEPT most recent diagnoses stay: a caller drawing new digits cannot fill the disk."""
    done = sorted((f for f in root.iterdir() if f.is_dir() and KEY.fullmatch(f.name)), key=lambda f: f.stat().st_mtime)
    for old in done[:-KEPT]:
        _discard(old)


async def _diagnose(request: Request, name: str, image: np.ndarray, folder: Path) -> None:
    """Runs the child into <key>.partial and moves it to <key> only once diverge.json and diverge.png are both
    written: a folder named by its key is always a whole diagnosis."""
    settings = request.app.state.settings
    partial = folder.with_name(folder.name + ".partial")
    _discard(partial)
    partial.mkdir(parents=True)
    np.save(partial / "input.npy", image)
    command = [sys.executable, "-m", "crossdeploy.cli", "diverge", name, "--repository", str(settings.repository),
               "--workdir", str(settings.workdir), "--inputs", str(partial / "input.npy"), "--out", str(partial)]
    child = await asyncio.create_subprocess_exec(*command, stdout=asyncio.subprocess.DEVNULL,
                                                 stderr=asyncio.subprocess.PIPE, start_new_session=True)
    try:
        _, stderr = await asyncio.wait_for(child.communicate(), TIMEOUT_S)
    except BaseException as exc:  # a timeout, or the gateway shutting down: no diagnosis is left running
        child.kill()
        await child.wait()
        _discard(partial)
        if isinstance(exc, asyncio.TimeoutError):
            raise DiagnosisTimeout(name, TIMEOUT_S) from None
        raise
    if child.returncode != 0 or not all((partial / f).is_file() for f in ("diverge.json", "diverge.png")):
        _discard(partial)
        raise _failure(name, stderr.decode(errors="replace"))
    partial.replace(folder)
    _prune(folder.parent)


@router.post("/v1/where/{name}", **doc.operation(
    "web_where", "Where a variant's chain first diverges for one input: per hop, per layer, with a plot",
    parameters=(CONVERTED,), body={"application/json": {"schema": _BODY}},
    ok={"application/json": {"schema": _RESPONSE}}, errors=(400, 404, 500, 503, 504),
    description="Runs `crossdeploy diverge NAME` on this one input in a child process (one at a time; the "
                "result is kept per variant version and input)."))
async def where(request: Request):
    gw: Gateway = request.app.state.gateway
    name = request.path_params["name"]
    entry = gw.registry.get(name)  # 404 for an unknown variant, before any work
    if entry.config.format == EAGER_FORMAT.get(entry.config.source_framework):
        raise InvalidInput(f"'{name}' is the eager model every other variant of {entry.config.model} is converted "
                           "from: it has no chain to follow; ask for one of those variants")
    image = _image(await request.body(), entry.config.inputs[0])
    # the child diagnoses the repository's latest version (a reload may not have reached this gateway yet)
    version = gw.registry.repository.get(name)[1].version
    key = hashlib.sha256(f"{name}/{version}/".encode() + image.tobytes()).hexdigest()[:20]
    folder = Path(request.app.state.settings.workdir) / "reports" / "where" / key
    if not folder.is_dir():
        if _running.locked():
            raise DiagnosisBusy(max(1, request.app.state.settings.retry_after_s))
        async with _running:
            await _diagnose(request, name, image, folder)
    found = json.loads((folder / "diverge.json").read_text())
    return json_response({"variant": name, "version": version, "chain": found.get("chain", []), "samples": found.get("samples"),
                          "verdicts": found.get("verdicts", []),
                          "hops": found.get("hops", []), "plot": f"/v1/where/{name}/{key}.png"})


@router.get("/v1/where/{name}/{key}.png", **doc.operation(
    "web_where_plot", "The error-vs-depth plot of a diagnosis made by POST /v1/where/{name}",
    parameters=(doc.MODEL, doc.path_parameter("key", "the diagnosis key the POST answered with",
                                              {"type": "string", "pattern": "^[0-9a-f]{20}$"})),
    ok={"image/png": {"schema": {"type": "string", "format": "binary"}}}, errors=(404,)))
async def where_plot(request: Request):
    key = request.path_params["key"]
    path = Path(request.app.state.settings.workdir) / "reports" / "where" / key / "diverge.png"
    if not KEY.fullmatch(key) or not path.is_file():
        return json_response({"error": f"no diagnosis '{key}': POST /v1/where/{request.path_params['name']} makes one"}, 404)
    return FileResponse(path, media_type="image/png", headers={"Cache-Control": "no-cache"})

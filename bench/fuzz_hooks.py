"""Schemathesis hooks for the fuzz runs (tests/test_openapi.py and `make fuzz`): how to make the payloads JSON
Schema cannot describe.

/openapi.json says truthfully what each route takes, but three kinds of valid payload are beyond JSON Schema:
a picture that shows a digit (the gateway refuses a blank or undecodable one with 400), a KServe V2 tensor whose
`data` holds exactly as many values as its `shape` says (and the binary extension's header length that frames
it), and JSON sent with curl -d's form content type. For those, and only in the fuzzer's positive mode (cases
the schema allows), these hooks draw real payloads from the served signature (image FP32 [-1, 8, 8]), and
name a served variant (a model name is a free string to the document). Negative cases (what the schema
forbids) are never touched: the gateway must refuse every one of them itself.
"""

from __future__ import annotations

import io
import urllib.request
import zlib

import numpy as np
import orjson
import schemathesis
from hypothesis import strategies as st
from PIL import Image

from crossdeploy.serving.codecs import tfserving, v2_binary

FORM = "application/x-www-form-urlencoded"
DIGITS = st.lists(st.integers(0, 16), min_size=64, max_size=64).filter(lambda v: max(v) >= 8).map(
    lambda v: np.asarray(v, dtype=np.float32).reshape(8, 8))


FORMATS = {"image/png": "PNG", "image/jpeg": "JPEG", "image/gif": "GIF", "image/webp": "WEBP"}


def _picture(digit: np.ndarray, side: int, dark_on_light: bool, kind: str = "PNG") -> bytes:
    pixels = (digit * 255 / 16).astype(np.uint8)
    image = Image.fromarray(255 - pixels if dark_on_light else pixels).resize((side, side), Image.Resampling.NEAREST)
    out = io.BytesIO()
    image.save(out, kind)
    return out.getvalue()


# Raw image/* bodies and the image parts of multipart forms: schemathesis would send its 1-pixel sample files.
for media, kind in FORMATS.items():
    schemathesis.openapi.media_type(media, st.builds(_picture, DIGITS, st.integers(8, 96), st.booleans(), st.just(kind)))


def _draw(case) -> tuple[np.ndarray, np.random.Generator]:
    """A batch of 1..4 digits (with ink) drawn from what the fuzzer generated, so every case gets its own."""
    seed = zlib.crc32(repr((case.path_parameters, case.query, case.body)).encode("utf-8", "replace"))
    rng = np.random.default_rng(seed)
    batch = rng.integers(0, 17, size=(int(rng.integers(1, 5)), 8, 8)).astype(np.float32)
    batch[:, 3, 3] = 16  # ink in every digit
    return batch, rng


def _v2_inputs(batch: np.ndarray) -> list[dict]:
    return [{"name": "image", "datatype": "FP32", "shape": list(batch.shape), "data": batch.ravel().tolist()}]


def _json_body(path: str, body, batch: np.ndarray) -> dict:
    """A valid JSON body for `path`, keeping what the fuzzer generated where the schema already made it valid."""
    if "/infer" in path:
        return {**(body if isinstance(body, dict) else {}), "inputs": _v2_inputs(batch)}
    if ":predict" in path:
        return orjson.loads(tfserving.encode_request({"image": batch})[0])
    if path.startswith("/predictions"):
        return {"data": batch.tolist()}
    if path == "/v1/compare":
        return {"image": batch.tolist()}
    return body if isinstance(body, dict) else {}


_SERVED: list[tuple[str, str]] | None = None


def _served(case) -> list[tuple[str, str]]:
    """(name, version) of every ready variant, asked once from the gateway under test: a model name is a free
    string to the document, and one the fuzzer makes up only ever reaches the 404."""
    global _SERVED
    if _SERVED is None:
        url = case.operation.schema.get_base_url() + "/v2/repository/index"
        try:
            with urllib.request.urlopen(url, data=b"{}", timeout=30) as response:
                _SERVED = sorted({(m["name"], str(m["version"])) for m in orjson.loads(response.read())
                                  if m.get("state") == "READY"})
        except (OSError, ValueError, KeyError, TypeError):
            _SERVED = []
    return _SERVED


def _real_model(case) -> None:
    """Most positive cases name a served variant (and its version); the rest keep the fuzzer's own name."""
    parameters = case.path_parameters
    served = _served(case) if parameters and "name" in parameters else []
    if not served:
        return
    rng = np.random.default_rng(zlib.crc32(repr(parameters).encode("utf-8", "replace")))
    if rng.random() < 0.85:
        name, version = served[int(rng.integers(len(served)))]
        parameters["name"] = name
        if "version" in parameters and rng.random() < 0.85:
            parameters["version"] = version


@schemathesis.hook
def map_case(context, case):
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive:
        return case
    _real_model(case)
    if case.media_type is None:
        return case
    path, media = case.operation.path, case.media_type
    batch, rng = _draw(case)
    if media == "application/octet-stream" and (path.startswith("/predictions") or path == "/v1/compare"):
        case.body = _picture(batch[0], int(rng.integers(8, 97)), bool(rng.integers(2)))
    elif media == "application/octet-stream" and "/infer" in path:
        case.body, headers = v2_binary.encode_request({"image": batch}, binary_output=bool(rng.integers(2)))
        case.headers = {**(case.headers or {}), **headers}
    elif media == FORM:
        case.body = orjson.dumps(_json_body(path, case.body, batch)).decode()
    elif "/infer" in path:
        case.body = _json_body(path, case.body, batch)
        case.headers = {k: v for k, v in (case.headers or {}).items() if k != v2_binary.HEADER_LENGTH}  # all JSON
    return case

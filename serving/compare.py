"""POST /v1/compare: one input through every variant, side by side — what no single server shows.

Per variant: outputs, predicted class, time; max abs diff against its own source's eager reference (and
whether that is within the variant's parity tolerance) and against every other variant of the same source;
argmax agreement across all variants; and the transport's precision: the same outputs after a V2 JSON and a
V2 binary round trip through the gateway's own encoder and a client's decoder, against the in-process values.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from fastapi import Request
from fastapi.responses import Response

from crossdeploy.errors import CrossdeployError, InvalidInput

from . import comparison
from . import openapi as doc
from .codecs import tensors, tfserving, torchserve, v2_json
from .core import Gateway, Timings
from .error_responses import json_response
from .registry import Served
from .routing import protocol_router
from .torchserve import UPLOAD_BODY
from .uploads import read_upload

router = protocol_router("Compare")

_ROW = {"type": "object", "required": ["name", "status"], "properties": {
    "name": {"type": "string"}, "status": {"enum": ["ok", "error"]}, "error": {"type": "string"},
    "predicted": {"type": "array", "items": {"type": "integer"}}, "reference": {"type": ["string", "null"]},
    "within_tolerance": {"type": ["boolean", "null"]}, "transport": {"type": "object"}}}
RESPONSE = doc.component("CompareResponse", {"type": "object", "required": ["input", "agreement", "variants"], "properties": {
    "input": {"type": "object", "required": ["shape", "from", "values"]},
    "agreement": {"type": "object", "required": ["all_agree", "majority", "disagreeing", "fraction"]},
    "variants": {"type": "array", "items": _ROW}}})
REQUEST = doc.component("CompareRequest", {
    "type": "object", "anyOf": [{"required": ["image"]}, {"required": ["data"]}],
    "description": "Also accepted: TF Serving's 'instances'/'inputs' and KServe V2 'inputs' tensors, as those "
                   "endpoints take them.",
    "properties": {"image": doc.ref("ServedInput"), "data": doc.ref("ServedInput"),
                   "variants": {"type": "array", "items": {"type": "string"}, "minItems": 1,
                                "description": "only these variants (default: every ready variant)"}}})
VARIANTS = {"name": "variants", "in": "query", "required": False, "schema": {"type": "string"},
            "description": "comma-separated variant names (a body's 'variants' takes precedence)"}


def _document(kind: str, payload: bytes) -> dict | None:
    if kind != "json":
        return None
    document = tfserving.parse_request(payload)  # a JSON object, or a 400
    variants = document.get("variants", [""])
    if not isinstance(variants, list) or not all(isinstance(n, str) for n in variants):
        raise InvalidInput("'variants' must be a list of variant names")
    if variants == []:
        raise InvalidInput("'variants' is empty: leave it out to compare every variant")
    return document


def decode_input(kind: str, payload: bytes, document: dict | None, served: Served, max_batch: int) -> dict[str, np.ndarray]:
    """Any input the other endpoints accept, against the first selected variant's signature."""
    signature = served.config.inputs
    if document is None:
        return torchserve.decode_image(payload, signature)
    inputs = document.get("inputs")
    if isinstance(inputs, list) and inputs and all(isinstance(t, dict) and "datatype" in t for t in inputs):
        return v2_json.decode(document, signature, max_batch)
    if "instances" in document or "inputs" in document:
        return tfserving.decode({k: v for k, v in document.items() if k != "variants"}, signature, max_batch)
    key = "image" if "image" in document else "data"
    if key not in document:
        raise InvalidInput("the compare body needs 'image' (or 'data', 'instances', 'inputs')")
    return torchserve.decode_values(document[key], signature, max_batch)


async def _run(gateway: Gateway, entry: Served, inputs: dict, signature) -> tuple[dict[str, Any], dict | None]:
    """(row, outputs or None): one variant on the input, checked against its own signature when it differs."""
    row = comparison.describe(entry)
    timings = Timings()

    def decode(served: Served):
        same = served.config.inputs == signature
        return inputs if same else tensors.conform(served.config.inputs, inputs, gateway.max_batch)

    try:
        outputs = await gateway.handle("compare", entry.name, str(entry.version), decode, lambda s, o: o, timings)
    except CrossdeployError as exc:
        return {**row, "status": "error", "error": str(exc)}, None
    first = outputs[entry.output_names[0]]
    return {**row, "status": "ok", "outputs": outputs, "predicted": first.argmax(-1),
            "probabilities": torchserve.softmax(first.astype(np.float64)), "inference_ms": timings.infer_ns / 1e6,
            "queue_ms": timings.queue_ns / 1e6, "transport": comparison.transport(entry, outputs)}, outputs


def _selected(request: Request, document: dict | None) -> list[str] | None:
    wanted = request.query_params.get("variants")
    names = [n for n in wanted.split(",") if n] if wanted else None
    return document["variants"] if document and "variants" in document else names


@router.post("/v1/compare", **doc.operation(
    "compare", "One input through every variant, side by side", parameters=(VARIANTS,),
    ok={"application/json": {"schema": RESPONSE}}, errors=(400, 404, 408, 413, 415, 503),
    body={**UPLOAD_BODY, **doc.json_body(REQUEST)}))
async def compare(request: Request) -> Response:
    gateway: Gateway = request.app.state.gateway
    kind, payload = await gateway.receive("compare", "", read_upload(request, gateway.max_body_bytes))
    document = _document(kind, payload)
    names = _selected(request, document)
    for name in names or []:
        gateway.registry.versions(name)  # 404 for an unknown variant
    candidates = [gateway.registry.lookup(n) for n in (names or gateway.registry.names())]
    ready = [entry for entry in candidates if entry.loaded]  # one failing now answers in its row
    if not ready:
        raise InvalidInput("none of the requested variants is ready")
    inputs = decode_input(kind, payload, document, ready[0], gateway.max_batch)
    rows, results = [], {}
    for entry in candidates:
        row, outputs = await _run(gateway, entry, inputs, ready[0].config.inputs)
        rows.append(row)
        if outputs is not None:
            results[entry.name] = (entry, outputs)
    if not results:  # every variant refused the input: that is the caller's error, said once
        raise InvalidInput(next(r["error"] for r in rows if r["status"] == "error"))
    comparison.add_differences(rows, results)
    return json_response({"input": comparison.input_summary(kind, inputs), "agreement": comparison.agreement(rows),
                          "variants": rows})

"""POST /v1/compare: one input through every variant, side by side — what no single server shows.

Per variant: outputs, predicted class, time; max abs diff against its own source's eager reference (and
whether that is within the variant's parity tolerance) and against every other variant of the same source;
argmax agreement across all variants; and the transport's precision: the same outputs after a V2 JSON and a
V2 binary round trip through the gateway's own encoder and a client's decoder, against the in-process values.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from crossdeploy.errors import CrossdeployError, InvalidInput
from crossdeploy.repository import EAGER_FORMAT

from .core import Gateway, Timings
from .http import json_response, openapi_body, parse_json
from .kserve_v2 import decode_inputs, decode_response, encode_response, json_tensor
from .registry import Served
from .tfserving import decode_predict
from .torchserve import decode_prediction, read_upload, softmax, with_batch

inference = APIRouter(tags=["Compare"])  # the hot routes, mounted before everything else


class CompareRequest(BaseModel):
    image: Any = Field(None, description="[8, 8] or [N, 8, 8] intensities 0..16 (also accepted: TorchServe's "
                                         "'data', TF Serving's 'instances'/'inputs', KServe V2 'inputs' tensors)")
    variants: list[str] | None = Field(None, description="only these variants (default: every ready variant)")


def decode_compare(kind: str, payload: bytes, served: Served) -> dict[str, np.ndarray]:
    """Any input the other endpoints accept, against the first selected variant's contract."""
    if kind == "image":
        return decode_prediction(kind, payload, served)
    document = parse_json(payload)
    if not isinstance(document, dict):
        raise InvalidInput("the compare body must be a JSON object")
    inputs = document.get("inputs")
    if isinstance(inputs, list) and inputs and all(isinstance(t, dict) and "datatype" in t for t in inputs):
        return decode_inputs(document, b"", served, max_batch=1 << 30)
    if "instances" in document or "inputs" in document:
        return decode_predict({k: v for k, v in document.items() if k != "variants"}, served)[0]
    key = "image" if "image" in document else "data"
    if key not in document:
        raise InvalidInput("the compare body needs 'image' (or 'data', 'instances', 'inputs')")
    spec = served.config.inputs[0]
    return {spec.name: with_batch(json_tensor(spec.name, document[key], np.dtype(np.float32)), spec.shape)}


def _max_abs(a: np.ndarray, b: np.ndarray) -> float | None:
    if a.shape != b.shape:
        return None
    return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)))) if a.size else 0.0


def _transport(served: Served, outputs: dict[str, np.ndarray]) -> dict:
    chosen_json = [(s.name, False, 0) for s in served.config.outputs]
    chosen_binary = [(s.name, True, 0) for s in served.config.outputs]
    report = {}
    for label, chosen in (("v2_json", chosen_json), ("v2_binary", chosen_binary)):
        body, header = encode_response(served, outputs, {}, chosen)
        received = decode_response(body, header)
        diffs = [_max_abs(received[n], outputs[n]) for n in outputs]
        worst = max(d for d in diffs if d is not None)
        report[label] = {"identical": all(np.array_equal(received[n], outputs[n]) for n in outputs), "max_abs_diff": worst,
                         "bytes": len(body)}
    return report


def _within(config, candidate: np.ndarray, reference: np.ndarray) -> bool | None:
    """None for int8: judged by agreement and accuracy over the test split, not value by value."""
    breaches = config.tolerance.breaches(candidate, reference)
    return None if breaches is None else breaches == 0


@inference.post("/v1/compare", summary="One input through every variant, side by side",
             openapi_extra=openapi_body(CompareRequest))
async def compare(request: Request):
    gw: Gateway = request.app.state.gateway
    kind, payload = await read_upload(request, request.app.state.settings.max_body_bytes)
    wanted = request.query_params.get("variants")
    names = [n for n in wanted.split(",") if n] if wanted else None
    if kind == "json":
        document = parse_json(payload)
        if isinstance(document, dict) and document.get("variants") is not None:
            if not isinstance(document["variants"], list) or not all(isinstance(n, str) for n in document["variants"]):
                raise InvalidInput("'variants' must be a list of variant names")
            names = document["variants"]
            if not names:
                raise InvalidInput("'variants' is empty: leave it out to compare every variant")
    for name in names or []:
        gw.registry.versions(name)  # 404 for an unknown variant
    candidates = [gw.registry.lookup(n) for n in (names or gw.registry.names())]
    ready = [entry for entry in candidates if entry.ready]
    if not ready:
        raise InvalidInput("none of the requested variants is ready")
    inputs = decode_compare(kind, payload, ready[0])

    rows, results = [], {}
    for entry in candidates:
        config = entry.config
        row: dict[str, Any] = {
            "name": entry.name, "version": entry.version, "model": config.model if config else None,
            "source_framework": config.source_framework if config else None, "format": config.format if config else None,
            "precision": config.precision if config else None,
            "pathway": " → ".join(step.tool for step in config.toolchain) if config else "",
            "support": config.support.model_dump() if config else None,
            "tolerance": config.tolerance.model_dump() if config else None,
        }
        timings = Timings()
        try:
            outputs = await gw.handle("compare", entry.name, str(entry.version), lambda s: inputs, lambda s, o: o, timings)
        except CrossdeployError as exc:
            rows.append({**row, "status": "error", "error": str(exc)})
            continue
        first = outputs[config.outputs[0].name]
        results[entry.name] = (entry, outputs)
        rows.append({**row, "status": "ok", "outputs": outputs, "predicted": first.argmax(-1),
                     "probabilities": softmax(first.astype(np.float64)), "inference_ms": timings.infer_ns / 1e6,
                     "queue_ms": timings.queue_ns / 1e6, "transport": _transport(entry, outputs)})

    for row in rows:
        if row["status"] != "ok":
            continue
        entry, outputs = results[row["name"]]
        config, first = entry.config, entry.config.outputs[0].name
        reference = next((n for n, (e, _) in results.items() if e.config.model == config.model
                          and e.config.source_framework == config.source_framework
                          and e.config.format == EAGER_FORMAT.get(config.source_framework)), None)
        row["reference"] = reference
        if reference:
            expected = results[reference][1][first]
            row["max_abs_diff_vs_reference"] = _max_abs(outputs[first], expected)
            row["within_tolerance"] = _within(config, outputs[first], expected)
        row["max_abs_diff_vs_same_source"] = {
            other: _max_abs(outputs[first], o[first]) for other, (e, o) in results.items()
            if other != row["name"] and e.config.source_framework == config.source_framework and e.config.model == config.model
        }

    if not results:  # every variant refused the input: that is the caller's error, said once
        raise InvalidInput(next(r["error"] for r in rows if r["status"] == "error"))
    predictions = np.stack([r["predicted"] for r in rows if r["status"] == "ok"])
    majority = [int(np.bincount(column).argmax()) for column in predictions.T]
    agreement = {
        "all_agree": bool((predictions == predictions[0]).all()),
        "majority": majority,
        "disagreeing": [r["name"] for r in rows if r["status"] == "ok" and list(r["predicted"]) != majority],
        "fraction": float((predictions == np.asarray(majority)).all(axis=1).mean()),
    }
    first_input = next(iter(inputs.values()))
    sent = np.asarray(orjson.loads(orjson.dumps(first_input, option=orjson.OPT_SERIALIZE_NUMPY)), dtype=first_input.dtype)
    body = {
        "input": {"shape": list(first_input.shape), "from": kind, "values": first_input,
                  "json_round_trip_max_abs_diff": _max_abs(sent, first_input)},
        "agreement": agreement,
        "variants": rows,
    }
    return json_response(body)


"""What /v1/compare computes from the variants' outputs, apart from HTTP: differences against each source's
eager reference and the other variants of the same source, the tolerance verdict, the transport's precision
and the argmax agreement across every variant."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson

from crossdeploy.repository import EAGER_FORMAT

from .codecs import v2_binary, v2_json
from .codecs.v2_json import OutputChoice
from .registry import Served

Results = dict[str, tuple[Served, dict[str, np.ndarray]]]


def max_abs(a: np.ndarray, b: np.ndarray) -> float | None:
    if a.shape != b.shape:
        return None
    return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)))) if a.size else 0.0


def transport(served: Served, outputs: dict[str, np.ndarray]) -> dict:
    """The outputs after a V2 JSON and a V2 binary round trip (the gateway's encoder, a client's decoder)."""
    report = {}
    header = v2_json.response_header(served.name, served.version_label, None)
    for label, binary in (("v2_json", False), ("v2_binary", True)):
        body, length = v2_binary.encode(header, outputs, [OutputChoice(name, binary, 0) for name in served.output_names])
        received = v2_binary.decode_response(body, length)
        diffs = [d for d in (max_abs(received[n], outputs[n]) for n in outputs) if d is not None]
        report[label] = {"identical": all(np.array_equal(received[n], outputs[n]) for n in outputs),
                         "max_abs_diff": max(diffs), "bytes": len(body)}
    return report


def within_tolerance(config, candidate: np.ndarray, reference: np.ndarray) -> bool | None:
    """None for int8: judged by agreement and accuracy over the test split, not value by value."""
    breaches = config.tolerance.breaches(candidate, reference)
    return None if breaches is None else breaches == 0


def _reference(config, results: Results) -> str | None:
    return next((name for name, (e, _) in results.items() if e.config.model == config.model
                 and e.config.source_framework == config.source_framework
                 and e.config.format == EAGER_FORMAT.get(config.source_framework)), None)


def add_differences(rows: list[dict[str, Any]], results: Results) -> None:
    """Per answered row: the eager reference, the diff against it and its verdict, and the diff against every
    other variant of the same model and source framework."""
    for row in rows:
        if row["status"] != "ok":
            continue
        entry, outputs = results[row["name"]]
        config, first = entry.config, entry.output_names[0]
        reference = row["reference"] = _reference(config, results)
        if reference:
            expected = results[reference][1][first]
            row["max_abs_diff_vs_reference"] = max_abs(outputs[first], expected)
            row["within_tolerance"] = within_tolerance(config, outputs[first], expected)
        row["max_abs_diff_vs_same_source"] = {
            other: max_abs(outputs[first], o[first]) for other, (e, o) in results.items()
            if other != row["name"] and e.config.source_framework == config.source_framework and e.config.model == config.model
        }


def agreement(rows: list[dict[str, Any]]) -> dict[str, Any]:
    answered = [r for r in rows if r["status"] == "ok"]
    predictions = np.stack([r["predicted"] for r in answered])
    majority = [int(np.bincount(column).argmax()) for column in predictions.T]
    return {
        "all_agree": bool((predictions == predictions[0]).all()),
        "majority": majority,
        "disagreeing": [r["name"] for r in answered if list(r["predicted"]) != majority],
        "fraction": float((predictions == np.asarray(majority)).all(axis=1).mean()),
    }


def input_summary(kind: str, inputs: dict[str, np.ndarray]) -> dict[str, Any]:
    """The first input as the variants received it, and what a JSON round trip of it loses."""
    first = next(iter(inputs.values()))
    sent = np.asarray(orjson.loads(orjson.dumps(first, option=orjson.OPT_SERIALIZE_NUMPY)), dtype=first.dtype)
    return {"shape": list(first.shape), "from": kind, "values": first, "json_round_trip_max_abs_diff": max_abs(sent, first)}


def describe(entry: Served) -> dict[str, Any]:
    config = entry.config
    return {
        "name": entry.name, "version": entry.version, "model": config.model if config else None,
        "source_framework": config.source_framework if config else None, "format": config.format if config else None,
        "precision": config.precision if config else None,
        "pathway": " → ".join(step.tool for step in config.toolchain) if config else "",
        "support": config.support.model_dump() if config else None,
        "tolerance": config.tolerance.model_dump() if config else None,
    }

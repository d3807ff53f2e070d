"""The parts of /openapi.json only the running gateway knows, as component schemas the routes refer to: the
served input's values (what TorchServe's `data`, TF Serving's `instances`/`inputs` and /v1/compare's `image`
hold), the V2 tensors the served models take, the output names, the variants served as ONNX files.

Every variant of a repository built by the pipeline shares one signature; a repository holding several takes
the union (anyOf), and the routes still check each request against the addressed variant's own signature.
"""

from __future__ import annotations

import math

import numpy as np

from crossdeploy.repository import EAGER_FORMAT, TensorSignature

# The smallest magnitude that rounds to infinity in each float type (its largest value plus half an ulp): a JSON
# number below it becomes a finite value, one at or above it infinity, which the gateway refuses.
OVERFLOW = {name: float(np.finfo(t).max) * 1.5 - float(np.nextafter(np.finfo(t).max, t(0))) / 2
            for name, t in (("FP16", np.float16), ("FP32", np.float32))}
INTEGER_RANGES = {"INT8": 2**7, "INT16": 2**15, "INT32": 2**31, "INT64": 2**63, "UINT8": 2**8, "UINT16": 2**16,
                  "UINT32": 2**32, "UINT64": 2**64}
NAMES = ("ServedExample", "ServedBatch", "ServedInput", "ServedInstance", "ServedColumns", "ServedTensor", "ServedOutputName",
         "OnnxVariant", "ConvertedVariant")


def _number(datatype: str) -> dict:
    """One value a tensor of `datatype` holds; JSON numbers beyond it would overflow (and are refused)."""
    if datatype == "BOOL":
        return {"type": "boolean"}
    if datatype in INTEGER_RANGES:
        top = INTEGER_RANGES[datatype]
        low = 0 if datatype.startswith("U") else -top
        return {"type": "integer", "minimum": low, "maximum": top - 1}
    if datatype in ("FP16", "FP32"):
        bound = OVERFLOW[datatype]
        return {"type": "number", "exclusiveMinimum": -bound, "exclusiveMaximum": bound}
    return {"type": "number"}


def example(spec: TensorSignature) -> dict:
    """One example: nested arrays of the signature's shape without its batch axis."""
    schema = _number(spec.datatype)
    for size in reversed(spec.shape[1:]):
        schema = {"type": "array", "items": schema, **({"minItems": size, "maxItems": size} if size > 0 else {"minItems": 1})}
    return schema


def batch(spec: TensorSignature, max_batch: int) -> dict:
    return {"type": "array", "items": example(spec), "minItems": 1, "maxItems": max_batch}


def values(spec: TensorSignature, max_batch: int) -> list[dict]:
    """What a single-input endpoint takes: one example, a batch, or one example flattened."""
    forms = [example(spec), batch(spec, max_batch)]
    if len(spec.shape) > 2 and all(d > 0 for d in spec.shape[1:]):
        flat = math.prod(spec.shape[1:])
        forms.append({"type": "array", "items": _number(spec.datatype), "minItems": flat, "maxItems": flat})
    return forms


def v2_tensor(spec: TensorSignature, max_batch: int) -> dict:
    """A V2 request tensor for this input. The schema cannot tie `data`'s length to `shape`: the gateway does."""
    shape = [{"type": "integer", "minimum": 1, "maximum": max_batch},
             *({"const": d} if d > 0 else {"type": "integer", "minimum": 1} for d in spec.shape[1:])]
    return {"type": "object", "required": ["name", "datatype", "shape"], "properties": {
        "name": {"const": spec.name}, "datatype": {"const": spec.datatype},
        "shape": {"type": "array", "prefixItems": shape, "items": False, "minItems": len(shape)},
        "data": {"type": "array", "description": "row-major values, flat or nested"},
        "parameters": {"type": "object", "properties": {"binary_data_size": {"type": "integer", "minimum": 0}}}}}


def _named(config, schema_of) -> dict:
    """An object naming every input of `config`, each holding what `schema_of(spec)` describes."""
    return {"type": "object", "required": [spec.name for spec in config.inputs], "additionalProperties": False,
            "properties": {spec.name: schema_of(spec) for spec in config.inputs}}


def _any(schemas: list[dict]) -> dict:
    unique = [s for i, s in enumerate(schemas) if s not in schemas[:i]]
    return unique[0] if len(unique) == 1 else {"anyOf": unique}


def served_schemas(configs: list, max_batch: int) -> dict[str, dict]:
    """The component schemas above for the served variants' configs (generic ones when nothing is served)."""
    if not configs:
        return {name: {"title": name, "description": "known once the gateway has loaded its models"} for name in NAMES}
    inputs = [config.inputs[0] for config in configs]
    outputs = sorted({spec.name for config in configs for spec in config.outputs})
    onnx = sorted({config.name for config in configs if config.format == "onnx"})
    converted = sorted({c.name for c in configs if c.format != EAGER_FORMAT.get(c.source_framework)})
    return {
        "ServedExample": {"title": "ServedExample", **_any([example(s) for s in inputs])},
        "ServedBatch": {"title": "ServedBatch", **_any([batch(s, max_batch) for s in inputs])},
        "ServedInput": {"title": "ServedInput", "description": "one example, a batch, or one example flattened",
                        "anyOf": [f for s in inputs for f in values(s, max_batch)]},
        "ServedInstance": {"title": "ServedInstance", **_any([_named(c, lambda spec: example(spec)) for c in configs])},
        "ServedColumns": {"title": "ServedColumns", **_any([_named(c, lambda spec: batch(spec, max_batch)) for c in configs])},
        "ServedTensor": {"title": "ServedTensor", **_any([v2_tensor(s, max_batch) for config in configs for s in config.inputs])},
        "ServedOutputName": {"title": "ServedOutputName", "enum": outputs},
        "OnnxVariant": {"title": "OnnxVariant", "type": "string", "enum": onnx or [""]},
        "ConvertedVariant": {"title": "ConvertedVariant", "type": "string", "enum": converted or [""],
                             "description": "a variant exported or converted from an eager model (not the model itself)"},
    }

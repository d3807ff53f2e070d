"""TF Serving REST `:predict`: the row form (`instances`, one entry per example, optionally objects naming the
inputs) and the columnar form (`inputs`, the batch per named input). A single-input model also takes bare
values for either. The answer mirrors the request's form: `predictions` for rows, `outputs` for columns.

Server side: `decode`, `form_of`, `encode`. Client side: `encode_request`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson

from crossdeploy.errors import InvalidInput

from .tensors import Signature, conform, json_object

SIGNATURE = "serving_default"
CONTENT_TYPE = "application/json"
ROW, COLUMNAR = "row", "columnar"


def parse_request(body: bytes) -> dict:
    return json_object(body, "the request (with 'instances' or 'inputs')")


def form_of(document: dict) -> str:
    """"row" or "columnar"; refuses a request with both or neither, or an unknown signature name."""
    signature = document.get("signature_name")
    if signature not in (None, "", SIGNATURE):
        raise InvalidInput(f"serving signature name: \"{signature}\" not found in signature def")
    if ("instances" in document) == ("inputs" in document):
        raise InvalidInput("the request must have exactly one of 'instances' (row format) or 'inputs' (columnar format)")
    return ROW if "instances" in document else COLUMNAR


def _row_columns(instances: Any, names: list[str]) -> dict[str, Any]:
    if not isinstance(instances, list) or not instances:
        raise InvalidInput("'instances' must be a non-empty list")
    if all(isinstance(i, dict) for i in instances):
        if extra := sorted({k for i in instances for k in i} - set(names)):
            raise InvalidInput(f"unexpected input(s) {extra}, the signature has {sorted(names)}")
        for name in names:
            if any(name not in i for i in instances):
                raise InvalidInput(f"every instance needs the input '{name}'")
        return {name: [i[name] for i in instances] for name in names}
    if len(names) == 1:
        return {names[0]: instances}
    raise InvalidInput(f"a model with inputs {sorted(names)} needs instances as objects naming them")


def _columnar_columns(inputs: Any, names: list[str]) -> dict[str, Any]:
    if isinstance(inputs, dict):
        if set(inputs) != set(names):
            raise InvalidInput(f"'inputs' names {sorted(inputs)}, the signature has {sorted(names)}")
        return inputs
    if len(names) == 1:
        return {names[0]: inputs}
    raise InvalidInput(f"a model with inputs {sorted(names)} needs 'inputs' as an object naming them")


def decode(request: bytes | dict, signature: Signature, max_batch: int | None = None) -> dict[str, np.ndarray]:
    """Either form to arrays, each checked once against the signature."""
    document = parse_request(request) if isinstance(request, (bytes, bytearray, memoryview)) else request
    names = [spec.name for spec in signature]
    if form_of(document) == ROW:
        columns = _row_columns(document["instances"], names)
    else:
        columns = _columnar_columns(document["inputs"], names)
    return conform(signature, columns, max_batch)


def encode(outputs: dict[str, np.ndarray], form: str) -> bytes:
    """`predictions` (rows) or `outputs` (columns); one output is given bare, several by name."""
    if form == ROW:
        if len(outputs) == 1:
            body: dict[str, Any] = {"predictions": next(iter(outputs.values()))}
        else:
            batch = next(iter(outputs.values())).shape[0]
            body = {"predictions": [{k: v[i] for k, v in outputs.items()} for i in range(batch)]}
    else:
        body = {"outputs": next(iter(outputs.values())) if len(outputs) == 1 else outputs}
    return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)


def encode_request(inputs: dict[str, np.ndarray], form: str = ROW) -> tuple[bytes, dict[str, str]]:
    """(body, headers) of a `:predict` request in the row or the columnar form."""
    if form not in (ROW, COLUMNAR):
        raise ValueError(f"form must be {ROW!r} or {COLUMNAR!r}, not {form!r}")
    single = len(inputs) == 1
    if form == ROW:
        batch = len(next(iter(inputs.values())))
        instances = next(iter(inputs.values())) if single else [{k: v[i] for k, v in inputs.items()} for i in range(batch)]
        document: dict[str, Any] = {"instances": instances}
    else:
        document = {"inputs": next(iter(inputs.values())) if single else inputs}
    return orjson.dumps(document, option=orjson.OPT_SERIALIZE_NUMPY), {"Content-Type": CONTENT_TYPE}

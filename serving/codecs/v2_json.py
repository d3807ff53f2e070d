"""KServe V2 / Open Inference Protocol JSON tensors, as Triton speaks them.

Server side: `parse_request` (bytes to the request object), `decode` (the request's input tensors to arrays,
checked against the signature; binary tensors come from `v2_binary`), `output_choices` (which outputs, in which
form, with Triton's classification extension) and `encode` (outputs to the response body).
Client side: `encode_request` and `decode_response`.
"""

from __future__ import annotations

import math
import struct
from typing import Any, NamedTuple, Sequence

import numpy as np
import orjson

from crossdeploy.errors import InvalidInput
from crossdeploy.repository import NUMPY_TO_V2, V2_TO_NUMPY

from .tensors import Signature, as_integer, check_shape, check_values, json_array, json_object

CONTENT_TYPE = "application/json"


class OutputChoice(NamedTuple):
    """One output to return: as a binary tensor or JSON, and as the top-k classes when `classes` > 0."""

    name: str
    binary: bool
    classes: int


# ---------------------------------------------------------------------------------------------- server side
def parse_request(body: bytes) -> dict:
    return json_object(body, "the inference request")


def _declared_shape(name: str, shape: Any) -> list[int]:
    if not isinstance(shape, list) or not all(type(d) is int for d in shape):
        integers = [as_integer(d) for d in shape] if isinstance(shape, list) else [None]
        if None in integers:
            raise InvalidInput(f"input '{name}': 'shape' must be a list of integers, got {shape!r}")
        shape = integers
    if any(d < 0 for d in shape):
        raise InvalidInput(f"input '{name}': shape {shape} has a negative dimension")
    return shape


def _binary_array(name: str, tensor: dict, size: Any, shape: list[int], dtype: np.dtype,
                  binary: bytes, offset: int) -> np.ndarray:
    wanted = math.prod(shape) * dtype.itemsize
    if "data" in tensor:
        raise InvalidInput(f"input '{name}' has both 'data' and binary_data_size")
    if as_integer(size) != wanted:
        raise InvalidInput(f"input '{name}': binary_data_size {size!r} does not match shape {shape} of "
                           f"{NUMPY_TO_V2[dtype]} ({wanted} bytes)")
    if offset + size > len(binary):
        raise InvalidInput(f"input '{name}': the body holds {len(binary) - offset} bytes of binary data, {size} declared")
    return np.frombuffer(binary, dtype=dtype, count=math.prod(shape), offset=offset).reshape(shape)


def _input_tensor(index: int, tensor: Any, specs: dict) -> tuple[str, Any]:
    if not isinstance(tensor, dict) or not isinstance(tensor.get("name"), str):
        raise InvalidInput(f"inputs[{index}] must be an object with a string 'name'")
    name = tensor["name"]
    if name not in specs:
        raise InvalidInput(f"unexpected inference input '{name}', the model has {sorted(specs)}")
    spec = specs[name]
    if tensor.get("datatype") != spec.datatype:
        raise InvalidInput(f"input '{name}': datatype is {tensor.get('datatype')!r}, the model expects {spec.datatype!r}")
    return name, spec


def _check_fields(document: dict) -> None:
    """The request's own fields, beside its tensors: what the protocol says each one is."""
    if "id" in document and not isinstance(document["id"], str):
        raise InvalidInput(f"'id' must be a string, got {document['id']!r}")
    parameters = document.get("parameters", {})
    if not isinstance(parameters, dict):
        raise InvalidInput("'parameters' must be an object")
    if not isinstance(parameters.get("binary_data_output", False), bool):
        raise InvalidInput("parameter 'binary_data_output' must be true or false")


def decode(request: bytes | dict, signature: Signature, max_batch: int | None = None,
           binary: bytes = b"") -> dict[str, np.ndarray]:
    """The request's input tensors as arrays, each checked once against the signature. Tensors that declare a
    `binary_data_size` are read, in order, from `binary` (the bytes after the JSON header)."""
    document = parse_request(request) if isinstance(request, (bytes, bytearray, memoryview)) else request
    _check_fields(document)
    tensors = document.get("inputs")
    if not isinstance(tensors, list) or not tensors:
        raise InvalidInput("'inputs' must be a non-empty list of tensors")
    specs = {spec.name: spec for spec in signature}
    arrays: dict[str, np.ndarray] = {}
    offset = 0
    for index, tensor in enumerate(tensors):
        name, spec = _input_tensor(index, tensor, specs)
        if name in arrays:
            raise InvalidInput(f"input '{name}' is given twice")
        shape = _declared_shape(name, tensor.get("shape"))
        check_shape(name, shape, spec, max_batch)
        dtype = V2_TO_NUMPY[spec.datatype]
        parameters = tensor.get("parameters", {})
        if not isinstance(parameters, dict):
            raise InvalidInput(f"input '{name}': 'parameters' must be an object")
        size = parameters.get("binary_data_size")
        if size is not None:
            array = _binary_array(name, tensor, size, shape, dtype, binary, offset)
            offset += array.nbytes
        elif "data" in tensor:
            array = json_array(name, tensor["data"], dtype, shape)
        else:
            raise InvalidInput(f"input '{name}' has neither 'data' nor a binary_data_size parameter")
        arrays[name] = check_values(name, array)
    if missing := sorted(set(specs) - set(arrays)):
        raise InvalidInput(f"the model expects input(s) {missing}, not given")
    if offset != len(binary):
        raise InvalidInput(f"{len(binary) - offset} bytes of binary data follow the declared inputs")
    return arrays


def _choice(entry: Any, names: Sequence[str], binary_default: bool) -> OutputChoice:
    if not isinstance(entry, dict) or entry.get("name") not in names:
        given = entry.get("name") if isinstance(entry, dict) else entry
        raise InvalidInput(f"unexpected inference output {given!r}, the model has {list(names)}")
    parameters = entry.get("parameters", {})
    if not isinstance(parameters, dict):
        raise InvalidInput(f"output '{entry['name']}': 'parameters' must be an object")
    if not isinstance(parameters.get("binary_data", False), bool):
        raise InvalidInput(f"output '{entry['name']}': binary_data must be true or false")
    k = as_integer(parameters.get("classification", 0))
    if k is None or k < 0:
        raise InvalidInput(f"output '{entry['name']}': classification must be a non-negative integer")
    return OutputChoice(entry["name"], bool(parameters.get("binary_data", binary_default)), k)


def output_choices(request: dict, names: Sequence[str]) -> list[OutputChoice]:
    """Every output to return, honouring the request's `outputs` and `binary_data_output`."""
    parameters = request.get("parameters")
    binary_default = isinstance(parameters, dict) and bool(parameters.get("binary_data_output", False))
    wanted = request.get("outputs")
    if wanted is None:
        return [OutputChoice(name, binary_default, 0) for name in names]
    if not isinstance(wanted, list):
        raise InvalidInput("'outputs' must be a list")
    return [_choice(entry, names, binary_default) for entry in wanted]


def classify(array: np.ndarray, k: int) -> np.ndarray:
    """Triton's classification extension: per batch row, the top-k as "score:index" strings."""
    if array.ndim != 2:
        raise InvalidInput(f"classification needs a [batch, classes] output, this one is {list(array.shape)}")
    top = np.argsort(-array, axis=1, kind="stable")[:, :k]
    return np.array([[f"{array[r, i]:f}:{i}" for i in row] for r, row in enumerate(top)], dtype=object)


def bytes_tensor(strings: np.ndarray) -> bytes:
    """V2's BYTES serialization: each element as a 4-byte little-endian length and its UTF-8 bytes."""
    return b"".join(struct.pack("<I", len(b)) + b for b in (s.encode() for s in strings.ravel()))


def response_header(model_name: str, model_version: str, request_id: Any) -> dict[str, Any]:
    header: dict[str, Any] = {"model_name": model_name, "model_version": model_version}
    if isinstance(request_id, str):
        header["id"] = request_id
    return header


def json_output(name: str, array: np.ndarray, classes: int) -> dict[str, Any]:
    """One output as a JSON tensor (numpy data, serialized by orjson), or its top-`classes` as BYTES."""
    if classes:
        array = classify(array, min(classes, array.shape[-1]))
        return {"name": name, "datatype": "BYTES", "shape": list(array.shape), "data": array.ravel().tolist()}
    return {"name": name, "datatype": NUMPY_TO_V2[array.dtype], "shape": list(array.shape),
            "data": np.ascontiguousarray(array).ravel()}


def encode(header: dict[str, Any], outputs: dict[str, np.ndarray], choices: Sequence[OutputChoice]) -> bytes:
    """A JSON response: `header` (see `response_header`) and the chosen outputs as JSON tensors."""
    tensors = [json_output(name, outputs[name], k) for name, _, k in choices]
    return orjson.dumps({**header, "outputs": tensors}, option=orjson.OPT_SERIALIZE_NUMPY)


# ---------------------------------------------------------------------------------------------- client side
def request_tensor(name: str, array: np.ndarray) -> dict[str, Any]:
    return {"name": name, "datatype": NUMPY_TO_V2[array.dtype], "shape": list(array.shape)}


def encode_request(inputs: dict[str, np.ndarray]) -> tuple[bytes, dict[str, str]]:
    """(body, headers) of a V2 JSON inference request, as a client sends it."""
    tensors = [{**request_tensor(name, a), "data": np.ascontiguousarray(a).ravel()} for name, a in inputs.items()]
    return orjson.dumps({"inputs": tensors}, option=orjson.OPT_SERIALIZE_NUMPY), {"Content-Type": CONTENT_TYPE}


def response_array(tensor: dict[str, Any]) -> np.ndarray:
    if tensor["datatype"] == "BYTES":
        return np.array([s.encode() if isinstance(s, str) else s for s in tensor["data"]], dtype=object).reshape(tensor["shape"])
    return np.asarray(tensor["data"], dtype=V2_TO_NUMPY[tensor["datatype"]]).reshape(tensor["shape"])


def decode_response(body: bytes) -> dict[str, np.ndarray]:
    """A V2 JSON inference response's outputs, as a client reads them."""
    return {tensor["name"]: response_array(tensor) for tensor in orjson.loads(body)["outputs"]}

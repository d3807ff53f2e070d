"""The KServe V2 binary tensor data extension: a JSON header of `Inference-Header-Content-Length` bytes, then
the raw tensors, in the order the header declares them (`parameters.binary_data_size`). Tensors in the same
request may still carry JSON `data`; the JSON side is `v2_json`'s.

Server side: `split` and `decode` a request, `encode` a response with any mix of binary and JSON outputs.
Client side: `encode_request` and `decode_response`.
"""

from __future__ import annotations

import struct
from typing import Any, Sequence

import numpy as np
import orjson

from crossdeploy.errors import InvalidInput
from crossdeploy.repository import NUMPY_TO_V2, V2_TO_NUMPY

from . import v2_json
from .tensors import Signature
from .v2_json import OutputChoice

HEADER_LENGTH = "Inference-Header-Content-Length"
CONTENT_TYPE = "application/octet-stream"


# ---------------------------------------------------------------------------------------------- server side
def split(body: bytes, header_length: str | None) -> tuple[dict, bytes]:
    """(the JSON request object, the binary tensor bytes after it); no header length: all of it is JSON."""
    if header_length is None:
        return v2_json.parse_request(body), b""
    if not header_length.strip().isdigit() or int(header_length) > len(body):
        raise InvalidInput(f"{HEADER_LENGTH} is {header_length!r}, the body has {len(body)} bytes")
    cut = int(header_length)
    return v2_json.parse_request(body[:cut]), body[cut:]


def decode(body: bytes, signature: Signature, header_length: str | None,
           max_batch: int | None = None) -> dict[str, np.ndarray]:
    request, binary = split(body, header_length)
    return v2_json.decode(request, signature, max_batch, binary)


def _binary_output(name: str, array: np.ndarray, k: int) -> tuple[dict[str, Any], bytes]:
    if k:
        array = v2_json.classify(array, min(k, array.shape[-1]))
        datatype, raw = "BYTES", v2_json.bytes_tensor(array)
    else:
        datatype, raw = NUMPY_TO_V2[array.dtype], np.ascontiguousarray(array).tobytes()
    return {"name": name, "datatype": datatype, "shape": list(array.shape), "parameters": {"binary_data_size": len(raw)}}, raw


def encode(header: dict[str, Any], outputs: dict[str, np.ndarray],
           choices: Sequence[OutputChoice]) -> tuple[bytes, int | None]:
    """(body, header length): the JSON header then the binary outputs; (JSON body, None) when none is binary."""
    if not any(choice.binary for choice in choices):
        return v2_json.encode(header, outputs, choices), None
    tensors, blobs = [], []
    for name, binary, k in choices:
        if binary:
            tensor, raw = _binary_output(name, outputs[name], k)
            blobs.append(raw)
        else:
            tensor = v2_json.json_output(name, outputs[name], k)
        tensors.append(tensor)
    encoded = orjson.dumps({**header, "outputs": tensors}, option=orjson.OPT_SERIALIZE_NUMPY)
    return encoded + b"".join(blobs), len(encoded)


# ---------------------------------------------------------------------------------------------- client side
def encode_request(inputs: dict[str, np.ndarray], binary_output: bool = False) -> tuple[bytes, dict[str, str]]:
    """(body, headers) of a V2 request with every input as binary tensor data; `binary_output` asks for the
    outputs in binary too."""
    tensors, blobs = [], []
    for name, array in inputs.items():
        raw = np.ascontiguousarray(array).tobytes()
        tensors.append({**v2_json.request_tensor(name, array), "parameters": {"binary_data_size": len(raw)}})
        blobs.append(raw)
    document: dict[str, Any] = {"inputs": tensors}
    if binary_output:
        document["parameters"] = {"binary_data_output": True}
    header = orjson.dumps(document)
    return header + b"".join(blobs), {"Content-Type": CONTENT_TYPE, HEADER_LENGTH: str(len(header))}


def _bytes_elements(raw: bytes) -> list[bytes]:
    elements, offset = [], 0
    while offset < len(raw):
        (length,) = struct.unpack_from("<I", raw, offset)
        elements.append(raw[offset + 4 : offset + 4 + length])
        offset += 4 + length
    return elements


def decode_response(body: bytes, header_length: int | None) -> dict[str, np.ndarray]:
    """A V2 response's outputs as a client reads them: JSON tensors, or binary ones after the header."""
    if header_length is None:
        return v2_json.decode_response(body)
    header = orjson.loads(body[:header_length])
    offset, arrays = header_length, {}
    for tensor in header["outputs"]:
        if "data" in tensor:
            arrays[tensor["name"]] = v2_json.response_array(tensor)
            continue
        size = tensor["parameters"]["binary_data_size"]
        raw = body[offset : offset + size]
        if tensor["datatype"] == "BYTES":
            arrays[tensor["name"]] = np.array(_bytes_elements(raw), dtype=object).reshape(tensor["shape"])
        else:
            arrays[tensor["name"]] = np.frombuffer(raw, dtype=V2_TO_NUMPY[tensor["datatype"]]).reshape(tensor["shape"])
        offset += size
    return arrays

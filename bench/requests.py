"""Every protocol's request as its client sends it, built in one place for every benchmark (the load generator,
wrk's scripts, the floor comparison): a path, a body and its headers."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

PROTOCOLS = ("v2-json", "v2-binary", "tfserving", "torchserve")


@dataclass(frozen=True)
class HttpRequest:
    path: str
    body: bytes
    headers: dict[str, str]


def _v2_json(inputs: dict[str, np.ndarray]) -> tuple[bytes, dict[str, str]]:
    tensors = [{"name": n, "datatype": "FP32", "shape": list(x.shape), "data": x.ravel().tolist()} for n, x in inputs.items()]
    return json.dumps({"inputs": tensors}).encode(), {"Content-Type": "application/json"}


def _v2_binary(inputs: dict[str, np.ndarray]) -> tuple[bytes, dict[str, str]]:
    tensors = [{"name": n, "datatype": "FP32", "shape": list(x.shape), "parameters": {"binary_data_size": x.nbytes}}
               for n, x in inputs.items()]
    header = json.dumps({"inputs": tensors, "parameters": {"binary_data_output": True}}).encode()
    body = header + b"".join(np.ascontiguousarray(x).tobytes() for x in inputs.values())
    return body, {"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(len(header))}


def _tfserving(inputs: dict[str, np.ndarray]) -> tuple[bytes, dict[str, str]]:
    (x,) = inputs.values()
    return json.dumps({"instances": x.tolist()}).encode(), {"Content-Type": "application/json"}


def _torchserve(inputs: dict[str, np.ndarray]) -> tuple[bytes, dict[str, str]]:
    (x,) = inputs.values()
    data = x[0].tolist() if len(x) == 1 else x.tolist()
    return json.dumps({"data": data}).encode(), {"Content-Type": "application/json"}


ENCODERS = {"v2-json": _v2_json, "v2-binary": _v2_binary, "tfserving": _tfserving, "torchserve": _torchserve}
PATHS = {"v2-json": "/v2/models/{}/infer", "v2-binary": "/v2/models/{}/infer", "tfserving": "/v1/models/{}:predict",
         "torchserve": "/predictions/{}"}


def build(protocol: str, variant: str, inputs: dict[str, np.ndarray]) -> HttpRequest:
    """The request for `variant`; V2 binary asks for binary outputs too, as a client choosing it for speed would."""
    if protocol not in ENCODERS:
        raise ValueError(f"unknown protocol {protocol!r} (known: {', '.join(PROTOCOLS)})")
    body, headers = ENCODERS[protocol](inputs)
    return HttpRequest(PATHS[protocol].format(variant), body, headers)

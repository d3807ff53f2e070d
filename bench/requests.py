"""Every protocol's request as its client sends it, built in one place for every benchmark (the load generator,
wrk's scripts, the floor comparison) by the serving codecs' client side: a path, a body and its headers."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import numpy as np

from crossdeploy.serving.codecs import tfserving, torchserve, v2_binary, v2_json

PROTOCOLS = ("v2-json", "v2-binary", "tfserving", "torchserve")
ENCODERS = {
    "v2-json": v2_json.encode_request,
    "v2-binary": partial(v2_binary.encode_request, binary_output=True),  # as a client choosing binary for speed would
    "tfserving": partial(tfserving.encode_request, form="row"),
    "torchserve": torchserve.encode_request,
}
PATHS = {"v2-json": "/v2/models/{}/infer", "v2-binary": "/v2/models/{}/infer", "tfserving": "/v1/models/{}:predict",
         "torchserve": "/predictions/{}"}


@dataclass(frozen=True)
class HttpRequest:
    path: str
    body: bytes
    headers: dict[str, str]


def build(protocol: str, variant: str, inputs: dict[str, np.ndarray]) -> HttpRequest:
    if protocol not in ENCODERS:
        raise ValueError(f"unknown protocol {protocol!r} (known: {', '.join(PROTOCOLS)})")
    body, headers = ENCODERS[protocol](inputs)
    return HttpRequest(PATHS[protocol].format(variant), body, headers)

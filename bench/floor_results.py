"""The schema of `make bench-gateway`'s report: build/reports/gateway/gateway_floor.json, with
gateway_floor.schema.json beside it. Latencies in milliseconds, throughput in requests per second.

    runs      every wrk run: target ("gateway" | "floor"), concurrency, repeat, its figures
    summary   "c1", "c8", "c32" (one per concurrency measured): each target's medians over the repeats, and
              ratio = the median over repeats of gateway / floor within one repeat, whose two runs are
              back to back (above 1 for rps is faster, below 1 for p50/p99 is faster)
    targets   "throughput_c8" (ratio ≥ bound) and "p99_c32" (ratio ≤ bound), each with whether it was met
    extras    the gateway alone: V2 binary against JSON at batch 64, a slow neighbour, tritonclient end to end
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel

from .results import Machine

Target = Literal["gateway", "floor"]


class WrkRun(BaseModel):
    target: Target
    concurrency: int
    repeat: int
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    requests: int
    errors: int  # wrk's status (non-2xx/3xx), connect, read, write and timeout errors
    server_cpu_cores: float  # the server process's CPU seconds per wall second (1.0 = one core busy)
    wrk_cpu_cores: float  # the same for wrk itself: near 1.0 would mean the load generator was the bound


class Figures(BaseModel):
    """One target at one concurrency: medians over the repeats, and every repeat's req/s to show the spread."""

    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    errors: int  # summed over the repeats
    server_cpu_cores: float
    rps_all: list[float]


class Ratio(BaseModel):
    rps: float
    p50: float
    p99: float


class AtConcurrency(BaseModel):
    concurrency: int
    gateway: Figures
    floor: Figures
    ratio: Ratio  # gateway / floor, paired within each repeat, median over the repeats


class TargetCheck(BaseModel):
    ratio: float  # gateway / floor
    bound: float
    kind: Literal["min", "max"]  # the ratio must be at least (min) or at most (max) the bound
    met: bool


class GatewayCode(BaseModel):
    """Which gateway ran: the file its process imported crossdeploy.serving from (printed by that process)."""

    serving_module: str
    python_path: str | None  # --gateway-python-path, when another checkout was measured
    repository: str
    inline_ms: float | None  # --inline-ms when given; the gateway's own default otherwise


class GatewayFloorReport(BaseModel):
    created: datetime
    model: str  # the variant, e.g. "torch-onnx"
    model_sha256: str  # the one ONNX file both servers load
    request: str  # e.g. "V2 JSON, batch 1"
    seconds: float  # per wrk run
    repeats: int
    runs: list[WrkRun]
    summary: dict[str, AtConcurrency]  # "c1", "c8", "c32"
    targets: dict[str, TargetCheck]  # "throughput_c8", "p99_c32" (when that concurrency was measured)
    extras: dict | None = None  # bench/gateway_extras.py; None with --no-extras
    gateway: GatewayCode
    floor: str  # what the floor is, in one line
    machine: Machine
    load_average: tuple[float, float, float]  # at the start: a busy machine shows here
    git_revision: str

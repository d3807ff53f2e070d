"""The latency report's schema: one pydantic model tree, written as results.json (and results.schema.json beside
it, so any run can be validated). Times are milliseconds unless a name says otherwise."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field, model_validator

Kind = Literal["inprocess", "gateway"]
Engine = Literal["inprocess", "ray"]  # what ran the gateway: one process (uvicorn), or a Ray Serve application


class Percentiles(BaseModel):
    count: int
    p50: float
    p90: float
    p99: float
    mean: float
    min: float
    max: float


class Run(BaseModel):
    """One repeat of one scenario: its windows merged once they were stable (or the cap was hit)."""

    latency: Percentiles  # per request (in-process: per call)
    throughput: float  # samples (rows) per second
    requests_per_s: float
    cpu_ms_per_inference: float | None = None  # process CPU time per call (in-process) or server CPU per request
    windows: int
    stable: bool
    window_p50s: list[float] = []
    errors: int = 0
    cdf: list[tuple[float, float]] = []  # (latency ms, fraction <= it), at most ~100 points
    server_ms: dict[str, float] | None = None  # mean server-side ms per request: queue, decode, inference, encode


class Spread(BaseModel):
    """A figure across the repeats: its median and range; `relative` = (max - min) / median."""

    median: float
    min: float
    max: float
    relative: float


class Scenario(BaseModel):
    kind: Kind
    variant: str
    layer: Literal["adapter", "bare"] | None = None  # in-process: through the runtime adapter, or the bare call
    protocol: str | None = None  # through a server: "v2-json" | "v2-binary" | "tfserving" | "torchserve"
    batch: int
    threads: int | None = None  # in-process intra-op threads
    concurrency: int | None = None  # gateway, closed loop
    mode: Literal["closed", "open"] | None = None
    rate: float | None = None  # open loop: requests per second offered
    target: str = "crossdeploy"  # or the --url of another server
    engine: Engine | None = None  # the gateway this bench started; None: in-process, a --url server, or an older report
    runs: list[Run]
    p50: Spread
    p99: Spread
    throughput: Spread
    stable: bool  # every run stable

    @model_validator(mode="after")
    def _says_how_the_model_was_called(self) -> "Scenario":
        wanted = "layer" if self.kind == "inprocess" else "protocol"
        if getattr(self, wanted) is None:
            raise ValueError(f"a {self.kind} scenario needs its {wanted}")
        return self

    def key(self) -> str:
        parts = [self.kind, self.variant, self.layer or self.protocol, f"b{self.batch}"]
        if self.threads:
            parts.append(f"t{self.threads}")
        if self.mode == "closed":
            parts.append(f"c{self.concurrency}")
        if self.mode == "open":
            parts.append(f"r{self.rate:g}")
        if self.engine and self.engine != "inprocess":
            parts.append(self.engine)
        return "/".join(parts)


class ColdStart(BaseModel):
    variant: str
    format: str
    load_s: float
    first_inference_ms: float
    artifact_bytes: int
    rss_added_mb: float


class ProcessGroup(BaseModel):
    """The memory of one kind of process of a running gateway, measured after its sweep (MB = 2**20 bytes)."""

    name: str  # "gateway", "models-torch", …, "driver" (the `crossdeploy serve` process), "ray" (Ray's own)
    processes: int
    pss_mb: float | None  # proportional set size: a page shared by n processes counts 1/n in each (None: unreadable)
    rss_mb: float  # resident set size: every shared page counts in full in each process
    members: list[str] = []  # the processes' names, for the "ray" line (raylet, gcs_server, ProxyActor, …)


class EngineRun(BaseModel):
    """One engine's gateway as the bench started it: how long it took to serve, and what it holds in memory."""

    engine: Engine
    cold_start_s: float  # from launching `crossdeploy serve` to the first 200 of /v2/health/ready
    memory: list[ProcessGroup]


class Verdict(BaseModel):
    """The fastest pathway of one scenario group, by median p50, and whether its lead beats the noise."""

    group: str  # e.g. "in-process, batch 1, 1 thread" or "gateway v2-binary, batch 1, C=4"
    winner: str
    runner_up: str | None
    winner_p50: float
    runner_up_p50: float | None
    margin: float | None  # (runner_up - winner) / runner_up
    tie: bool  # the difference is within the larger of the two spreads
    tied_with: list[str] = []


class Machine(BaseModel):
    platform: str
    processor: str
    cores: int
    memory_gb: float
    python: str


class BenchReport(BaseModel):
    created: datetime
    duration_s: float
    quick: bool
    machine: Machine
    versions: dict[str, str]  # every package that touches inference
    git_revision: str
    settings: dict
    scenarios: list[Scenario] = []
    coldstart: list[ColdStart] = []
    engines: list[EngineRun] = []  # one per gateway engine the bench started
    verdicts: list[Verdict] = []
    notes: list[str] = Field(default_factory=list)  # how the load generator was checked, flagged scenarios, …

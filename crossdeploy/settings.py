"""Settings from the environment (CROSSDEPLOY_ prefix) with a docstring per field."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

FAMILIES = ("torch", "tensorflow", "onnx", "executorch")


class FamilyScale(BaseModel):
    """How one runtime family's model deployment runs on the Ray engine (a replica is one process)."""

    model_config = ConfigDict(use_attribute_docstrings=True, extra="forbid")

    replicas: int = Field(1, ge=1)
    """Replicas at start; with `max_replicas` above it, the autoscaling floor (Ray's `min_replicas`)."""

    max_replicas: int | None = Field(None, ge=1)
    """Autoscale between `replicas` and this many; unset: a fixed `replicas`."""

    target_ongoing_requests: float = Field(2.0, gt=0.0)
    """Requests in progress per replica that Ray's autoscaler aims at."""

    num_cpus: float = Field(0.25, gt=0.0)
    """CPUs Ray reserves per replica. Ray sets OMP_NUM_THREADS from it (1 when fractional); the runtimes'
    threads come from `threads` instead, set explicitly in every replica."""

    threads: int = Field(1, ge=1)
    """Intra-op threads per runtime in a replica (torch, onnxruntime, TensorFlow, LiteRT)."""

    max_ongoing_requests: int = Field(8, ge=1)
    """Requests one replica works on at once (Ray's `max_ongoing_requests`)."""

    max_queued_requests: int = Field(64, ge=-1)
    """Requests the family's callers may queue for a replica beyond that; more are refused with 503 and
    Retry-After in the protocol's format (-1: unbounded)."""

    @model_validator(mode="after")
    def _floor_below_ceiling(self):
        if self.max_replicas is not None and self.max_replicas < self.replicas:
            raise ValueError(f"max_replicas ({self.max_replicas}) is below replicas ({self.replicas})")
        return self


class RayEngine(BaseModel):
    """The `serve` section for `crossdeploy serve --engine ray` (env: CROSSDEPLOY_RAY__<FIELD>, and
    CROSSDEPLOY_RAY__FAMILIES__<FAMILY>__<FIELD>)."""

    model_config = ConfigDict(use_attribute_docstrings=True, extra="forbid")

    address: str | None = None
    """A Ray cluster to join ("auto", "ray://host:10001", "host:6379"); unset: a cluster started with `ray start`
    on this machine when there is one, else a local one for this process, with `num_cpus`."""

    num_cpus: int | None = Field(None, ge=1)
    """CPUs of the local cluster this process starts (default: the machine's)."""

    ingress_replicas: int = Field(1, ge=1)
    """Replicas of the ingress (the FastAPI app: protocols, codecs, compare, metrics, page)."""

    ingress_cpus: float = Field(0.25, gt=0.0)
    """CPUs Ray reserves per ingress replica."""

    health_check_period_s: float = Field(10.0, gt=0.0)
    """How often Ray asks every model replica to run each of its variants once; a replica that fails is replaced."""

    families: dict[str, FamilyScale] = Field(default_factory=lambda: {f: FamilyScale() for f in FAMILIES})
    """One model deployment per runtime family: torch (eager, TorchScript, torch.export, AOTInductor),
    tensorflow (SavedModel, Keras), onnx (onnxruntime and LiteRT), executorch. A family's crash is its own."""

    @model_validator(mode="after")
    def _known_families(self):
        unknown = sorted(set(self.families) - set(FAMILIES))
        if unknown:
            raise ValueError(f"unknown runtime families {unknown} (known: {', '.join(FAMILIES)})")
        self.families = {f: self.families.get(f, FamilyScale()) for f in FAMILIES}
        return self


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CROSSDEPLOY_", use_attribute_docstrings=True, env_nested_delimiter="__")

    repository: Path = Field(default_factory=lambda: Path.cwd() / "model_repository")
    """Root of the Triton-style model repository: <repository>/<variant>/<version>/<file>."""

    workdir: Path = Field(default_factory=lambda: Path.cwd() / "build")
    """Trained weights, export staging and reports live here (git-ignored)."""

    keep_versions: int = Field(2, ge=1)
    """How many versions of each variant the repository keeps; older ones are pruned."""

    seed: int = 0
    """Seed for the data split and for both trainings."""

    epochs: int = Field(30, ge=1)
    """Training epochs for each framework."""

    threads: int = Field(2, ge=1)
    """Intra-op threads for every runtime (the machine has 2 cores)."""

    serve_threads: int = Field(1, ge=1)
    """Intra-op threads per runtime in the gateway. 1: on 2 cores, onnxruntime ran the digits CNN in 24 us at
    batch 1 and 493 us at batch 64 with one thread, 52 us and 652 us with two (bench: README, concurrency)."""

    host: str = "127.0.0.1"
    """Address the gateway binds (the container sets 0.0.0.0)."""

    port: int = Field(8000, ge=1, le=65535)
    """Port the gateway listens on."""

    max_body_bytes: int = Field(8 * 1024 * 1024, ge=1024)
    """Largest request body accepted; a larger one gets 413 before it is read whole."""

    max_in_flight: int = Field(64, ge=1)
    """Requests allowed in flight at once; beyond it the gateway answers 503 with Retry-After."""

    admission_wait_ms: float = Field(100.0, ge=0.0)
    """How long a request beyond `max_in_flight` waits for a free slot (first come, first served) before it is
    refused with 503; 0 refuses at once. Under overload this keeps clients that resend at once from turning the
    gateway's time into refusals (docs/reliability.md)."""

    max_waiting: int = Field(64, ge=0)
    """Requests that may wait for a slot at once; beyond it a request is refused without waiting. About as many
    as the slots that free within the wait: a request further back would only wait to be refused (a timer each)."""

    max_queue_ms: float = Field(500.0, gt=0.0)
    """Estimated work (calls queued x the variant's measured time per call) one variant's executor may hold; a
    request beyond it gets 503 + Retry-After at once instead of queueing, so under overload a slow variant cannot
    fill the in-flight slots the others need."""

    executor_slots: int = Field(default_factory=lambda: max(1, (os.cpu_count() or 2) - 1), ge=0)
    """Inferences that run on variants' executor threads at once, across all variants (default: the cores
    but one, which the event loop needs); 0 leaves it unbounded. Each waits its turn in arrival order; a call
    running past 250 ms gives its turn up."""

    retry_after_s: int = Field(1, ge=0)
    """Seconds a client refused for too many requests in flight is told to wait (the 503's Retry-After)."""

    max_batch: int = Field(1024, ge=1)
    """Largest batch one request may carry."""

    inline_ms: float = Field(0.5, ge=0.0)
    """Inference estimated below this many milliseconds runs on the event loop (no thread hop) when its
    variant's executor is idle; 0 sends every call to the variant's executor thread."""

    inference_timeout_s: float = Field(10.0, gt=0.0)
    """Longest one inference may take: a call still running then is answered 504 in the protocol's format, and
    its variant is reported not ready until the call returns or the variant is reloaded."""

    model_control_mode: Literal["none", "explicit"] = "none"
    """Triton's naming. "none": the repository's load/unload endpoints are refused (the repository is served as
    it was at start). "explicit": they work, with the management token."""

    management_token: str | None = None
    """Bearer token the load/unload endpoints require in explicit mode; when not given one is generated and
    written to `management_token_file` (0600)."""

    management_token_file: Path | None = None
    """Where a generated management token is written (0600); default <workdir>/management_token."""

    expect_digest: str | None = None
    """sha256 the repository's index must have (`crossdeploy digest` prints it); the gateway refuses
    to start on any other."""

    engine: Literal["inprocess", "ray"] = "inprocess"
    """What runs the gateway: "inprocess", one process holding every variant (uvicorn); "ray", a Ray Serve
    application: the FastAPI app as the ingress, one model deployment per runtime family (`ray`)."""

    ray: RayEngine = Field(default_factory=RayEngine)
    """The Ray engine's section: cluster, replicas and CPUs per family (docs/scaling.md)."""

    access_log: bool = False
    """Log every request (uvicorn's access log); off by default, as in Triton, to keep latency honest."""

    probe_interval_s: float = Field(2.0, ge=0.0)
    """How long a health probe's verdict is reused: a model's ready endpoint (and /v2/health/ready, /ping) runs
    a real batch-1 inference of it at most once per this many seconds; 0 probes on every ask."""

    header_timeout_s: float = Field(10.0, gt=0.0)
    """Longest a client may take to send a request's line and headers (from connecting, or from the first byte
    of the next request on a kept-alive connection); then it is answered 408 and the connection closed, so a
    client sending headers slowly (slowloris) holds a connection for this long at most."""

    body_timeout_s: float = Field(30.0, gt=0.0)
    """Longest a request's body may take to arrive once its headers have; then it is answered 408 in the
    protocol's error format, and the request gives back its in-flight slot."""

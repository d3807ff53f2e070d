"""What `crossdeploy matrix` finds: one row per pathway of a spec, one record per spec, and the whole run."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

# `ok with remedy`: passed once a known remedy was applied (export/remedies.py); not a failure, but not `ok`.
REMEDIED = "ok with remedy"
STATUSES = ("ok", REMEDIED, "export failed", "conversion failed", "load failed", "runtime failed", "parity failed")
# The status a pathway gets when its worker dies or hangs in a step without reporting it.
FAILED_AT_STEP = {"prepare": "export failed", "export": "export failed", "load": "load failed",
                  "run": "runtime failed", "latency": "runtime failed", "parity": "parity failed"}


@dataclass
class PathwayResult:
    model: str
    framework: str
    pathway: str
    status: str
    required: bool
    step: str
    message: str = ""
    variant: str | None = None
    version: int | None = None
    size_bytes: int | None = None
    max_abs: float | None = None
    max_rel: float | None = None
    min_atol: float | None = None
    agreement: float | None = None
    accuracy: float | None = None
    reference_accuracy: float | None = None
    p50_ms: float | None = None
    seconds: float | None = None
    export_seconds: float | None = None
    precision: str | None = None
    chain: str | None = None
    tolerance: dict | None = None
    dynamic_batch: bool | None = None
    max_batch: int | None = None
    batch_note: str = ""
    declared_batch: str | None = None
    notes: list[str] = field(default_factory=list)
    remedy: str | None = None  # the remedy it passed with (status `ok with remedy`)
    remedy_cost: str = ""  # what that remedy costs where the variant is served
    remedy_replaces: str = ""  # the failure without it
    remedy_attempts: list[dict] = field(default_factory=list)  # every remedy tried: remedy, status, step, message
    int8_curve: dict | None = None  # int8 rows with a keep-float curve asked for: export/matrix_int8.py

    @property
    def ok(self) -> bool:
        """Passed, with or without a remedy."""
        return self.status in ("ok", REMEDIED)

    @property
    def batch(self) -> str:
        """How the served variant treats the batch axis."""
        if self.variant is None:
            return "—"
        if self.max_batch == 1:
            return "fixed 1, rows split"
        if self.max_batch:
            return f"≤ {self.max_batch}, split"
        if self.declared_batch and self.declared_batch.startswith("fixed"):
            return self.declared_batch
        return "dynamic" if self.dynamic_batch else "fixed"


@dataclass
class SpecRun:
    name: str
    framework: str
    path: str
    description: str
    samples: int
    labels: bool
    source_accuracy: float | None
    seconds: float
    workers: int
    log: str


@dataclass
class MatrixRun:
    specs: list[SpecRun]
    results: list[PathwayResult]
    created: str
    timeout: float
    registered: list[str] = field(default_factory=list)
    not_run: list[tuple[str, str]] = field(default_factory=list)  # (model, pathway) required but left out by --pathway

    @property
    def required_failures(self) -> list[PathwayResult]:
        return [r for r in self.results if r.required and not r.ok]

    def to_json(self) -> dict:
        return {"created": self.created, "timeout_seconds": self.timeout, "statuses": list(STATUSES),
                "passed": not self.required_failures, "registered": self.registered,
                "specs": [asdict(s) for s in self.specs],
                "results": [{**asdict(r), "batch": r.batch} for r in self.results]}

"""The repository's config schema: config.json beside the versions of each variant, read into pydantic models."""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import PurePosixPath
from typing import Any, Literal

from pydantic import BaseModel, field_validator

from crossdeploy.errors import ModelNotFound

from .vocabulary import TensorSignature, Tolerance

CONFIG = "config.json"
# module.path:function, nothing else: an entry is never a file path.
ENTRY = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*")


def unsafe_path(path: str) -> str | None:
    """Why `path` cannot name a file inside a version folder (None when it can): the check on the text alone;
    where a symlink leads is the repository's check (it needs the disk)."""
    if not path or "\0" in path or "\\" in path:
        return "a file path must be non-empty, without NUL or backslash"
    pure = PurePosixPath(path)
    if pure.is_absolute():
        return f"file path '{path}' is absolute; it must be relative to the version folder"
    if ".." in pure.parts:
        return f"file path '{path}' leaves the version folder ('..')"
    return None


class FileRecord(BaseModel):
    path: str  # relative to the version folder, inside it
    sha256: str
    size: int

    @field_validator("path")
    @classmethod
    def _inside_the_version(cls, value: str) -> str:
        reason = unsafe_path(value)
        if reason:
            raise ValueError(reason)
        return value


class ToolStep(BaseModel):
    tool: str
    version: str
    detail: str = ""


class Support(BaseModel):
    status: Literal["active", "deprecated", "superseded", "limited-maintenance"]
    note: str


class OutputParity(BaseModel):
    name: str
    max_abs: float
    mean_abs: float
    p50_abs: float
    p99_abs: float
    max_rel: float
    min_atol: float  # smallest atol that passes at rtol=0
    min_rtol: float  # smallest rtol that passes at atol=0 (inf if the reference has exact zeros it misses)


class ParityResult(BaseModel):
    passed: bool
    checked_at: datetime
    reference: str
    samples: int
    outputs: list[OutputParity]
    agreement: float | None  # None: the output has no classes (a regression, a single column)
    accuracy: float | None
    reference_accuracy: float | None
    tolerance: Tolerance
    failures: list[str]


class VersionRecord(BaseModel):
    version: int
    created: datetime
    files: list[FileRecord]
    parity: ParityResult | None = None


class AppliedRemedy(BaseModel):
    """An option set the exporter was given because the pathway failed without it (`crossdeploy matrix`)."""

    name: str  # its name in the matrix's remedy table (export/remedies.py)
    options: dict[str, Any] = {}  # the pathway's exporter keyword options it set
    upstream: dict[str, Any] = {}  # the options of the exporter this pathway converts from
    cost: str  # what it costs where the variant is served
    replaces: str  # the failure without it (first line)


class VariantConfig(BaseModel):
    name: str
    model: str
    format: str  # key of the runtime adapter registry
    runtime: ToolStep  # what runs the artifact
    source_framework: Literal["pytorch", "keras"]
    precision: Literal["fp32", "int8"]
    pathway: str  # the pathway key (torch-onnx, keras-tflite, ...) this variant was built along
    toolchain: list[ToolStep]  # every tool the artifact went through, source first
    support: Support
    inputs: list[TensorSignature]
    outputs: list[TensorSignature]
    dynamic_batch: bool
    max_batch: int | None = None
    batch_note: str = ""
    entry: str | None = None  # model code for formats that are weights only (torch-eager): "module:function"
    notes: list[str] = []  # what a user deploying this artifact must know
    remedy: AppliedRemedy | None = None  # never applied silently: a variant built with one says so here
    tolerance: Tolerance
    versions: list[VersionRecord] = []

    @field_validator("entry")
    @classmethod
    def _module_and_function(cls, value: str | None) -> str | None:
        if value is not None and not ENTRY.fullmatch(value):
            raise ValueError(f"entry '{value[:80]}' must be 'module:function' (a module name, not a path)")
        return value

    def latest(self) -> VersionRecord:
        return max(self.versions, key=lambda record: record.version)

    def version(self, number: int | None = None) -> VersionRecord:
        if number is None and self.versions:
            return self.latest()
        for record in self.versions:
            if record.version == number:
                return record
        raise ModelNotFound(self.name, number)

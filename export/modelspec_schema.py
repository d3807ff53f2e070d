"""The model spec file's schema: what each field may hold, checked by pydantic when the TOML is read
(the format itself is shown in export/modelspec.py). A problem becomes one `SpecError` line naming the field."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from crossdeploy.errors import ConfigError
from crossdeploy.repository import FLOAT_TOLERANCE, V2_TO_NUMPY, TensorSignature, Tolerance

FACTORY = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
SPEC_DATATYPES = ("FP32", "FP64", "INT64", "INT32", "UINT8")  # what the exporters and samples handle
DATATYPES = {name: V2_TO_NUMPY[name].type for name in SPEC_DATATYPES}


class SpecError(ConfigError):
    """A spec that cannot be used; the CLI prints it in one line and exits with 2."""

    exit_code = 2


class Signature(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1)
    datatype: Literal["FP32", "FP64", "INT64", "INT32", "UINT8"]
    shape: list[int] = Field(min_length=1)

    @field_validator("shape")
    @classmethod
    def _dims(cls, shape: list[int]) -> list[int]:
        if shape[0] != -1:
            raise ValueError(f"the first (batch) axis must be -1: every pathway is exported with a dynamic batch, got {shape[0]}")
        if any(d < 1 for d in shape[1:]):
            raise ValueError("every axis after the batch axis must be a positive size")
        return shape

    def signature(self) -> TensorSignature:
        return TensorSignature(name=self.name, datatype=self.datatype, shape=tuple(self.shape))


class Samples(BaseModel):
    model_config = ConfigDict(extra="forbid")
    file: str | None = None
    loader: str | None = None
    calibration: str | None = None  # "module:function" returning int8 calibration inputs (never the test samples)

    @model_validator(mode="after")
    def _one(self) -> "Samples":
        if (self.file is None) == (self.loader is None):
            raise ValueError("give exactly one of 'file' (.npy or .npz) or 'loader' (module:function)")
        for field, value in (("loader", self.loader), ("calibration", self.calibration)):
            if value is not None and not FACTORY.match(value):
                raise ValueError(f"{field} must look like 'package.module:function', got {value!r}")
        return self


class ModelSpecFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    framework: Literal["pytorch", "keras"]
    factory: str
    weights: str | None = None
    inputs: list[Signature] = Field(min_length=1)
    outputs: list[Signature] = []  # empty: taken from what the model returns on two samples (named "output")
    samples: Samples
    tolerance: Tolerance = FLOAT_TOLERANCE
    required: list[str] = []
    opset: int = Field(18, ge=13, le=23)
    variant_prefix: str | None = Field(None, pattern=r"^[a-z0-9-]*$")
    description: str = ""
    # int8 pathways: also re-quantize with 0..N of the most sensitive nodes kept float (the matrix's curve)
    int8_keep_float: int | None = Field(None, ge=0, le=64)

    @field_validator("tolerance", mode="before")
    @classmethod
    def _tolerance(cls, value):
        """A partial [tolerance] keeps the defaults for what it leaves out (an atol left out would turn off the
        value comparison)."""
        if isinstance(value, dict):
            return {**FLOAT_TOLERANCE.model_dump(exclude_none=True), **value}
        return value

    @field_validator("inputs", "outputs")
    @classmethod
    def _one_tensor(cls, tensors: list[Signature], info) -> list[Signature]:
        if len(tensors) != 1 and not (info.field_name == "outputs" and not tensors):
            raise ValueError(f"the exporters take one {info.field_name[:-1]} tensor per model; this spec declares {len(tensors)}")
        return tensors

    @field_validator("required")
    @classmethod
    def _required(cls, names: list[str]) -> list[str]:
        from .pathways import BY_NAME

        unknown = [n for n in names if n != "all" and n not in BY_NAME]
        if unknown:
            raise ValueError(f"unknown pathway(s) {', '.join(unknown)}; known: all, {', '.join(BY_NAME)}")
        return names

    @model_validator(mode="after")
    def _required_source(self) -> "ModelSpecFile":
        from .pathways import BY_NAME

        foreign = [n for n in self.required if n != "all" and BY_NAME[n].source != self.framework]
        if foreign:
            raise ValueError(f"required: {', '.join(foreign)} start(s) from the other framework, not {self.framework}")
        return self

    @property
    def prefix(self) -> str:
        return f"{self.name}-" if self.variant_prefix is None else self.variant_prefix

    def variant(self, pathway: str) -> str:
        return f"{self.prefix}{pathway}"

    def is_required(self, pathway: str) -> bool:
        return "all" in self.required or pathway in self.required

    @field_validator("factory")
    @classmethod
    def _factory(cls, value: str) -> str:
        if not FACTORY.match(value):
            raise ValueError(f"must look like 'package.module:function', got {value!r}")
        return value


class LoadedSpec(BaseModel):
    """A validated spec with its sample data loaded and its paths resolved."""

    model_config = ConfigDict(arbitrary_types_allowed=True)
    path: Path
    spec: ModelSpecFile
    weights: Path | None
    x: dict[str, np.ndarray]
    y: np.ndarray | None
    calibration: np.ndarray

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def framework(self) -> str:
        return self.spec.framework

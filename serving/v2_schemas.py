"""KServe V2 / Open Inference Protocol bodies as /openapi.json documents them (the routes encode with the codecs;
these models are the documentation, and the tests validate real answers against it)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from crossdeploy.repository import V2_TO_NUMPY

DATATYPES = Literal[tuple([*V2_TO_NUMPY, "BYTES"])]  # type: ignore[valid-type]


class Tensor(BaseModel):
    name: str
    shape: list[int]
    datatype: DATATYPES = Field(examples=["FP32"])
    parameters: dict[str, Any] | None = Field(None, description="binary_data_size (bytes) for the binary extension")
    data: list[Any] | None = Field(None, description="row-major values, flat or nested")


# The request as JSON Schema: its tensors are the served inputs' (served_schemas.ServedTensor).
REQUESTED_OUTPUT = {"type": "object", "required": ["name"], "properties": {
    "name": {"$ref": "#/components/schemas/ServedOutputName"},
    "parameters": {"type": "object", "properties": {
        "binary_data": {"type": "boolean"},
        "classification": {"type": "integer", "minimum": 0, "description": "the top-k classes as 'score:index'"}}}}}
INFERENCE_REQUEST = {"type": "object", "required": ["inputs"], "properties": {
    "id": {"type": "string"},
    "parameters": {"type": "object", "properties": {"binary_data_output": {"type": "boolean"}}},
    "inputs": {"type": "array", "minItems": 1, "items": {"$ref": "#/components/schemas/ServedTensor"}},
    "outputs": {"type": "array", "items": REQUESTED_OUTPUT}}}


class InferenceResponse(BaseModel):
    model_name: str
    model_version: str
    id: str | None = None
    outputs: list[Tensor]


class TensorMetadata(BaseModel):
    name: str
    datatype: str
    shape: list[int]


class ModelMetadata(BaseModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]


class ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str]


class Liveness(BaseModel):
    live: bool


class ServerReadiness(BaseModel):
    ready: bool
    models_ready: int
    models_unavailable: int


class ModelReadiness(BaseModel):
    name: str
    version: str
    ready: bool
    error: str | None = Field(None, description="why the model is not ready")
    reason: str | None = Field(None, description="a note on a ready model: its artifact changed on disk, a reload failed")


class Phase(BaseModel):
    count: int
    ns: int


class ModelStatistics(BaseModel):
    name: str
    version: str
    last_inference: int
    inference_count: int
    execution_count: int
    inference_stats: dict[str, Phase]
    batch_stats: list[Any]


class Statistics(BaseModel):
    model_stats: list[ModelStatistics]


class ModelConfiguration(BaseModel):
    """Triton's fields, and the variant's own config.json under `crossdeploy`."""

    name: str
    platform: str
    backend: str
    max_batch_size: int
    input: list[dict[str, Any]]
    output: list[dict[str, Any]]
    version_policy: dict[str, Any]
    crossdeploy: dict[str, Any]


class IndexRequest(BaseModel):
    ready: bool | None = Field(None, description="only the versions that are READY")


class IndexEntry(BaseModel):
    name: str
    version: str
    state: Literal["READY", "UNAVAILABLE"]
    reason: str


class Empty(BaseModel):
    pass

"""What /openapi.json says about each route, declared beside the route: its path and query parameters, every
request content type it reads, every status it answers and the error body of its protocol.

Routes are `RawRoute`s (see routing.py): FastAPI infers nothing from their signatures, so `operation()` is the
whole description. `document()` finishes the schema with the component schemas the routes refer to, and with
the facts only the running gateway knows (the served input signature, the batch bound).
"""

from __future__ import annotations

from typing import Any, Iterable

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

REF = "#/components/schemas/"
ERROR = "Error"  # KServe V2, TF Serving, compare and the page's routes: {"error": "..."}
TORCHSERVE_ERROR = "TorchServeError"  # TorchServe: {"code", "type", "message"}
REASONS = {
    400: "The request is malformed or does not fit the model's signature",
    401: "A management request without the right bearer token (WWW-Authenticate: Bearer)",
    403: "Model control is off (the gateway was not started with --model-control-mode explicit)",
    404: "No such model, version or file",
    408: "The body did not arrive within the gateway's body deadline",
    413: "The body is larger than the gateway's limit (after decompression)",
    415: "Unsupported Content-Type or Content-Encoding",
    500: "The runtime failed on this input",
    503: "The model is not ready, or too many requests are in flight (Retry-After)",
    504: "The model did not answer within the gateway's inference deadline",
}
COMPONENTS: dict[str, dict] = {
    ERROR: {"title": ERROR, "type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
    TORCHSERVE_ERROR: {"title": TORCHSERVE_ERROR, "type": "object", "required": ["code", "type", "message"],
                       "properties": {"code": {"type": "integer"}, "type": {"type": "string"},
                                      "message": {"type": "string"}}},
}
JSON = "application/json"
BEARER = "managementToken"  # the security scheme of load/unload (see management.py)
SECURITY_SCHEMES = {BEARER: {"type": "http", "scheme": "bearer",
                             "description": "The management token: CROSSDEPLOY_MANAGEMENT_TOKEN, or the file the "
                                            "gateway names at start (<workdir>/management_token)"}}
FORM_URLENCODED = "application/x-www-form-urlencoded"  # curl -d's default: the body is read as JSON


def ref(name: str) -> dict:
    return {"$ref": REF + name}


def component(model: type[BaseModel] | str, schema: dict | None = None) -> dict:
    """Registers a pydantic model (or a named JSON schema) among the components; returns a reference to it."""
    if isinstance(model, str):
        COMPONENTS[model] = {"title": model, **(schema or {})}
        return ref(model)
    generated = model.model_json_schema(ref_template=REF + "{model}")
    COMPONENTS.update(generated.pop("$defs", {}))
    COMPONENTS[model.__name__] = generated
    return ref(model.__name__)


def path_parameter(name: str, description: str, schema: dict | None = None) -> dict:
    return {"name": name, "in": "path", "required": True, "description": description, "schema": schema or {"type": "string"}}


MODEL = path_parameter("name", "The variant's name in the model repository")
VERSION = path_parameter("version", "A version number of the variant")


def json_body(schema: dict) -> dict[str, dict]:
    """A JSON request body, also accepted as curl -d sends it (application/x-www-form-urlencoded holding JSON)."""
    return {JSON: {"schema": schema}, FORM_URLENCODED: {"schema": {"type": "string", "description": "the JSON body"}}}


def operation(operation_id: str, summary: str, *, ok: dict[str, dict] | None = None, ok_headers: dict | None = None,
              errors: Iterable[int] = (), torchserve: bool = False, parameters: Iterable[dict] = (),
              body: dict[str, dict] | None = None, body_required: bool = True, also: dict[int, dict] | None = None,
              description: str | None = None, secured: bool = False) -> dict[str, Any]:
    """Keyword arguments for `router.get/post/put`: the operation as /openapi.json shows it.
    `ok`: the 200 response's content by media type; `errors`: the statuses answered with the protocol's error
    body; `also`: other responses, whole; `body`: the request content by media type; `secured`: the operation
    needs the management token (bearer)."""
    error = ref(TORCHSERVE_ERROR if torchserve else ERROR)
    responses: dict[int, dict] = {200: {"description": "OK", "content": ok or {JSON: {"schema": {}}}}}
    if ok_headers:
        responses[200]["headers"] = ok_headers
    for status in errors:
        responses[status] = {"description": REASONS[status], "content": {JSON: {"schema": error}}}
        if status == 503:
            responses[status]["headers"] = {"Retry-After": {"description": "when too many requests are in flight",
                                                            "schema": {"type": "string"}}}
        if status == 401:
            responses[status]["headers"] = {"WWW-Authenticate": {"description": "Bearer", "schema": {"type": "string"}}}
    responses.update(also or {})
    extra: dict[str, Any] = {}
    if parameters:
        extra["parameters"] = list(parameters)
    if body:
        extra["requestBody"] = {"required": body_required, "content": body}
    if secured:
        extra["security"] = [{BEARER: []}]
    return {"operation_id": operation_id, "summary": summary, "description": description, "responses": responses,
            "openapi_extra": extra or None}


def document(app: FastAPI, facts: dict[str, dict]) -> dict:
    """The OpenAPI document; `facts` are component schemas the running gateway fills in (e.g. the served input)."""
    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    schema.setdefault("components", {})["securitySchemes"] = SECURITY_SCHEMES
    components = schema["components"].setdefault("schemas", {})
    components.update(COMPONENTS)
    components.update(facts)
    for item in schema["paths"].values():
        for entry in item.values():  # a 200 without content needs no schema for "any JSON"
            for response in entry.get("responses", {}).values():
                for media in response.get("content", {}).values():
                    media.setdefault("schema", {})
    return schema

"""HTTP plumbing shared by the protocol routers: bounded body reading, content types, the in-flight bound,
and the one table that maps crossdeploy's errors to statuses (each protocol shapes its own error body)."""

from __future__ import annotations

import zlib

import orjson
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from crossdeploy.errors import (
    ArtifactError, CrossdeployError, InvalidInput, ModelNotFound, ModelNotReady, Overloaded, PayloadTooLarge,
    UnsupportedMediaType,
)

STATUS = {ModelNotFound: 404, ModelNotReady: 503, InvalidInput: 400, PayloadTooLarge: 413,
          UnsupportedMediaType: 415, Overloaded: 503, ArtifactError: 500}
TORCHSERVE_PREFIXES = ("/predictions", "/ping", "/models")
TORCHSERVE_TYPES = {404: "ModelNotFoundException", 503: "ServiceUnavailableException", 400: "BadRequestException",
                    413: "PayloadTooLargeException", 415: "UnsupportedMediaTypeException", 422: "BadRequestException",
                    405: "MethodNotAllowedException", 500: "InternalServerException"}


def status_of(exc: CrossdeployError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


def error_response(path: str, status: int, message: str, headers: dict | None = None) -> Response:
    if path.startswith(TORCHSERVE_PREFIXES):
        body = {"code": status, "type": TORCHSERVE_TYPES.get(status, "InternalServerException"), "message": message}
    else:  # KServe V2, TF Serving and compare all answer {"error": "..."}
        body = {"error": message}
    return json_response(body, status, headers)


async def crossdeploy_error(request: Request, exc: CrossdeployError) -> Response:
    headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, Overloaded) else None
    return error_response(request.url.path, status_of(exc), str(exc), headers)


async def validation_error(request: Request, exc: RequestValidationError) -> Response:
    first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
    where = ".".join(str(p) for p in first.get("loc", ()))
    return error_response(request.url.path, 422, f"{where}: {first.get('msg')}")


async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
    return error_response(request.url.path, exc.status_code, str(exc.detail), getattr(exc, "headers", None))


HANDLERS = {CrossdeployError: crossdeploy_error, RequestValidationError: validation_error,
            StarletteHTTPException: http_error}


async def read_body(request: Request, limit: int) -> bytes:
    """Reads at most `limit` bytes: a declared larger body is refused before reading, a streamed one as soon
    as it crosses the limit. gzip/deflate request bodies (tritonclient's compression) are inflated, bounded too."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(limit)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(limit)
        chunks.append(chunk)
    body = b"".join(chunks)
    encoding = request.headers.get("content-encoding", "identity").lower()
    if encoding in ("gzip", "deflate"):
        inflater = zlib.decompressobj(wbits=31 if encoding == "gzip" else 15)
        try:
            body = inflater.decompress(body, limit + 1)
        except zlib.error as exc:
            raise InvalidInput(f"request body is not valid {encoding}: {exc}") from exc
        if len(body) > limit or inflater.unconsumed_tail:
            raise PayloadTooLarge(limit)
        if not inflater.eof:
            raise InvalidInput(f"request body is truncated {encoding}")
    elif encoding != "identity":
        raise UnsupportedMediaType(f"Content-Encoding: {encoding}", ["gzip", "deflate", "identity"])
    return body


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def require_media(request: Request, accepted: tuple[str, ...], allow_missing: bool = True) -> str:
    kind = media_type(request)
    if kind == "application/x-www-form-urlencoded" and "application/json" in accepted:
        return "application/json"  # curl -d's default; TF Serving's own examples rely on it being read as JSON
    if (not kind and allow_missing) or kind in accepted or any(a.endswith("/*") and kind.startswith(a[:-1]) for a in accepted):
        return kind
    raise UnsupportedMediaType(kind or "(none)", list(accepted))


def parse_json(body: bytes) -> object:
    if not body.strip():
        raise InvalidInput("request body is empty")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"malformed JSON: {exc}") from exc


class InFlightLimit:
    """Pure ASGI middleware: beyond `limit` concurrent POSTs/PUTs, answer 503 + Retry-After at once instead of
    queueing without bound."""

    def __init__(self, app, limit: int, metrics):
        self.app, self.limit, self.metrics = app, limit, metrics
        self.current = 0

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT"):  # PUT: TorchServe's curl -T
            return await self.app(scope, receive, send)
        if self.current >= self.limit:
            self.metrics.rejected.labels("overloaded").inc()
            response = error_response(scope["path"], 503, str(Overloaded(self.limit)), {"Retry-After": "1"})
            return await response(scope, receive, send)
        self.current += 1
        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send)
        finally:
            self.current -= 1
            self.metrics.in_flight.dec()


def json_response(body: object, status: int = 200, headers: dict | None = None) -> Response:
    return Response(orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY), status_code=status,
                    media_type="application/json", headers=headers)


# Request models of routes that parse their own bodies (binary, multipart, orjson): documented in /docs by
# reference; app.openapi() adds their schemas to components.
DOCUMENTED: dict[str, dict] = {}


def openapi_body(model, media: tuple[str, ...] = ("application/json",), path: tuple[str, ...] = ()) -> dict:
    """OpenAPI for a hot route that parses its own body and reads its own path parameters (`request.path_params`):
    FastAPI's per-request parameter solving cost a quarter of such a request's time on the event loop."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    DOCUMENTED.update(schema.pop("$defs", {}))
    DOCUMENTED[model.__name__] = schema
    ref = {"$ref": f"#/components/schemas/{model.__name__}"}
    parameters = [{"name": p, "in": "path", "required": True, "schema": {"type": "string"}} for p in path]
    return {"requestBody": {"required": True, "content": {m: {"schema": ref} for m in media}},
            **({"parameters": parameters} if parameters else {})}


async def unexpected_error(request: Request, exc: Exception) -> Response:
    """The last resort: an exception nobody named still gets the protocol's error shape, and is logged."""
    import logging

    logging.getLogger("crossdeploy.gateway").exception("unexpected error on %s", request.url.path)
    return error_response(request.url.path, 500, f"internal error: {type(exc).__name__}: {str(exc)[:300]}")


HANDLERS[Exception] = unexpected_error

"""The one table that maps crossdeploy's errors to HTTP statuses, and the error body each protocol answers with:
TorchServe's `{"code", "type", "message"}` under its paths, `{"error": "..."}` (KServe V2, TF Serving, compare)
everywhere else. The app installs `HANDLERS`; every route's errors go through them."""

from __future__ import annotations

import logging

import orjson
from fastapi import Request
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from crossdeploy.errors import (
    ArtifactError, CrossdeployError, InferenceFailed, InferenceTimeout, InvalidInput, ManagementDisabled,
    ModelNotFound, ModelNotReady, Overloaded, PayloadTooLarge, Unauthorized, UnsupportedMediaType,
)

STATUS = {ModelNotFound: 404, ModelNotReady: 503, InvalidInput: 400, PayloadTooLarge: 413,
          UnsupportedMediaType: 415, Overloaded: 503, ArtifactError: 500, InferenceTimeout: 504,
          InferenceFailed: 500, Unauthorized: 401, ManagementDisabled: 403}
TORCHSERVE_PREFIXES = ("/predictions", "/ping", "/models")
TORCHSERVE_TYPES = {404: "ModelNotFoundException", 503: "ServiceUnavailableException", 400: "BadRequestException",
                    413: "PayloadTooLargeException", 415: "UnsupportedMediaTypeException",
                    405: "MethodNotAllowedException", 500: "InternalServerException", 504: "RequestTimeoutException", 408: "RequestTimeoutException",
                    401: "UnauthorizedException", 403: "ForbiddenException"}
log = logging.getLogger("crossdeploy.gateway")


def status_of(exc: CrossdeployError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


def json_response(body: object, status: int = 200, headers: dict | None = None) -> Response:
    return Response(orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY), status_code=status,
                    media_type="application/json", headers=headers)


def error_response(path: str, status: int, message: str, headers: dict | None = None) -> Response:
    if path.startswith(TORCHSERVE_PREFIXES):
        body = {"code": status, "type": TORCHSERVE_TYPES.get(status, "InternalServerException"), "message": message}
    else:  # KServe V2, TF Serving and compare all answer {"error": "..."}
        body = {"error": message}
    return json_response(body, status, headers)


async def crossdeploy_error(request: Request, exc: CrossdeployError) -> Response:
    headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, Overloaded) else None
    if isinstance(exc, Unauthorized):
        headers = {"WWW-Authenticate": "Bearer"}
    return error_response(request.url.path, status_of(exc), str(exc), headers)


async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
    """Starlette's own refusals (no such path, method not allowed) in the protocol's error shape."""
    return error_response(request.url.path, exc.status_code, str(exc.detail), getattr(exc, "headers", None))


async def unexpected_error(request: Request, exc: Exception) -> Response:
    """The last resort: an exception nobody named still gets the protocol's error shape, and is logged."""
    log.exception("unexpected error on %s", request.url.path)
    return error_response(request.url.path, 500, f"internal error: {type(exc).__name__}: {str(exc)[:300]}")


HANDLERS = {CrossdeployError: crossdeploy_error, StarletteHTTPException: http_error, Exception: unexpected_error}

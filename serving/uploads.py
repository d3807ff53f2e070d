"""Reading an upload: a raw body (`curl -T digit.png`, `--data-binary`) or the first part of a multipart form
(`curl -F data=@digit.png`), bounded like every other body. What TorchServe's predictions and /v1/compare take."""

from __future__ import annotations

from fastapi import Request
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from crossdeploy.errors import InvalidInput, PayloadTooLarge

from .http import body_deadline, read_body, require_media

IMAGE_MEDIA = ("image/*", "application/octet-stream")
MULTIPART = "multipart/form-data"
MEDIA = ("application/json", MULTIPART, *IMAGE_MEDIA)
FORM_PARTS = ("data", "body", "file")  # the part names TorchServe's handlers look for, in order


async def _read_form(request: Request, limit: int) -> tuple[str, bytes]:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(limit)
    received = 0

    async def bounded():  # a chunked form has no Content-Length: count what arrives, stop past the limit
        nonlocal received
        message = await request.receive()
        received += len(message.get("body", b""))
        if received > limit:
            raise PayloadTooLarge(limit)
        return message

    try:
        async with body_deadline(request):
            form = await Request(request.scope, bounded).form(max_files=4, max_fields=16, max_part_size=limit)
    except (PayloadTooLarge, HTTPException):
        raise
    except Exception as exc:  # python-multipart raises several types for a broken form
        raise InvalidInput(f"malformed multipart form: {exc}") from exc
    for key in (*FORM_PARTS, *form.keys()):
        part = form.get(key)
        if isinstance(part, UploadFile):
            content = await part.read()
            return ("json" if (part.content_type or "").endswith("json") else "image"), content
        if isinstance(part, str) and part:
            return "json", part.encode()
    raise InvalidInput("the multipart form has no 'data' part")


async def read_upload(request: Request, limit: int) -> tuple[str, bytes]:
    """("image", bytes) or ("json", bytes) from a raw body or the first part of a multipart form."""
    kind = require_media(request, MEDIA)
    if kind == MULTIPART:
        return await _read_form(request, limit)
    body = await read_body(request, limit)
    if not body:
        raise InvalidInput("the request body is empty: send an image or JSON {\"data\": ...}")
    return ("json" if kind == "application/json" else "image"), body

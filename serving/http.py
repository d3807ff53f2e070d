"""HTTP plumbing shared by the protocol routers: bounded body reading (with gzip/deflate) and content types."""

from __future__ import annotations

import asyncio
import zlib
from contextlib import asynccontextmanager
from typing import AsyncIterator

from fastapi import Request
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from crossdeploy.errors import InvalidInput, PayloadTooLarge, UnsupportedMediaType

ENCODINGS = ("gzip", "deflate", "identity")
FORM_URLENCODED = "application/x-www-form-urlencoded"


def _inflate(body: bytes, encoding: str, limit: int) -> bytes:
    inflater = zlib.decompressobj(wbits=31 if encoding == "gzip" else 15)
    try:
        body = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise InvalidInput(f"request body is not valid {encoding}: {exc}") from exc
    if len(body) > limit or inflater.unconsumed_tail:
        raise PayloadTooLarge(limit)
    if not inflater.eof:
        raise InvalidInput(f"request body is truncated {encoding}")
    return body


def _too_slow(seconds: float, detail: str = "") -> HTTPException:
    return HTTPException(408, f"the request body did not arrive within {seconds:g} s{detail}")


@asynccontextmanager
async def body_deadline(request: Request) -> AsyncIterator[None]:
    """The body deadline for a body read some other way (a multipart form): 408 when it passes."""
    seconds = request.app.state.settings.body_timeout_s
    try:
        async with asyncio.timeout(seconds):
            yield
    except TimeoutError:
        raise _too_slow(seconds) from None


async def _chunks(request: Request, limit: int) -> list[bytes]:
    """The body's chunks as they arrive, within Settings.body_timeout_s: a client trickling its body byte by
    byte would otherwise hold its in-flight slot for as long as it liked."""
    chunks, size = [], 0
    seconds = request.app.state.settings.body_timeout_s
    try:
        async with asyncio.timeout(seconds):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise PayloadTooLarge(limit)
                chunks.append(chunk)
    except TimeoutError:
        raise _too_slow(seconds, f" ({size} bytes came)") from None
    except ClientDisconnect:  # nobody is left to read the answer; counted as the client's fault, not the server's
        raise InvalidInput("the client closed the connection before sending the whole body") from None
    return chunks


async def read_body(request: Request, limit: int) -> bytes:
    """Reads at most `limit` bytes within the body deadline: a declared larger body is refused before reading,
    a streamed one as soon as it crosses the limit, a slow one with 408. gzip/deflate request bodies
    (tritonclient's compression) are inflated, bounded too."""
    headers = request.headers
    declared = headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(limit)
    encoding = headers.get("content-encoding", "identity").lower()
    if encoding not in ENCODINGS:
        raise UnsupportedMediaType(f"Content-Encoding: {encoding}", list(ENCODINGS))
    chunks = await _chunks(request, limit)
    body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
    return body if encoding == "identity" else _inflate(body, encoding, limit)


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def require_media(request: Request, accepted: tuple[str, ...], allow_missing: bool = True) -> str:
    """The request's media type if `accepted` lists it (`image/*` covers every image type), "" when there is
    none. curl -d's default, application/x-www-form-urlencoded, is read as JSON where JSON is accepted: TF
    Serving's own examples rely on it."""
    kind = media_type(request)
    if kind == FORM_URLENCODED and "application/json" in accepted:
        return "application/json"
    if (not kind and allow_missing) or kind in accepted or any(a.endswith("/*") and kind.startswith(a[:-1]) for a in accepted):
        return kind
    raise UnsupportedMediaType(kind or "(none)", list(accepted))

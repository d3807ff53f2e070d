"""The routes' one extension point: FastAPI's `route_class`.

A `RawRoute` hands the raw `Request` to its endpoint, which reads its own path parameters
(`request.path_params`), query and body with the codecs. FastAPI solves no dependencies and parses no
parameters for it: that machinery cost a quarter of a small inference request's time on the event loop, and
its refusals (422 with FastAPI's own body) are not what the protocols answer. The route stays an ordinary
APIRoute otherwise: matched by the router, its errors shaped by the app's handler table, and documented in
/openapi.json from what `openapi.operation()` declares (its parameters, bodies, statuses and error bodies).
"""

from __future__ import annotations

from typing import Awaitable, Callable

from fastapi import APIRouter, Request
from fastapi.responses import Response
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException
from starlette.types import Receive, Scope, Send

Endpoint = Callable[[Request], Awaitable[Response]]


class RawRoute(APIRoute):
    allowed_methods: set[str] | None = None

    def get_route_handler(self) -> Endpoint:
        return self.endpoint

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] not in self.methods:
            raise HTTPException(status_code=405, headers={"Allow": ", ".join(sorted(self.allowed_methods or self.methods))})
        await self.app(scope, receive, send)


def protocol_router(tag: str) -> APIRouter:
    """One router per protocol; every route on it is a `RawRoute`."""
    return APIRouter(tags=[tag], route_class=RawRoute)


def share_allowed_methods(routes) -> None:
    """Routes declared per method on one path (POST and PUT /predictions, each its own operation) answer a 405
    whose Allow header names every method of the path, not only their own."""
    by_path: dict[str, set[str]] = {}
    for route in routes:
        if isinstance(route, RawRoute):
            by_path.setdefault(route.path, set()).update(route.methods)
    for route in routes:
        if isinstance(route, RawRoute):
            route.allowed_methods = by_path[route.path]

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

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # APIRoute wraps the handler in two exit stacks for dependencies with yield, which a raw endpoint has
        # none of: the route's ASGI app calls the handler directly.
        handler = self.get_route_handler()

        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            response = await handler(Request(scope, receive, send))
            await response(scope, receive, send)

        self.app = app

    def get_route_handler(self) -> Endpoint:
        endpoint = self.endpoint

        async def handler(request: Request) -> Response:
            try:
                return await endpoint(request)
            except Exception as exc:  # shaped by the app's handler table, as any route's error
                return await handler_for(request.app, exc)(request, exc)

        return handler

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] not in self.methods:
            raise HTTPException(status_code=405, headers={"Allow": ", ".join(sorted(self.allowed_methods or self.methods))})
        await self.app(scope, receive, send)


def handler_for(app, exc: Exception):
    """The app's exception handler for `exc`: the nearest of its classes in the app's table."""
    handlers = app.exception_handlers
    return next(handlers[cls] for cls in type(exc).__mro__ if cls in handlers)


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

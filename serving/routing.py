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

Endpoint = Callable[[Request], Awaitable[Response]]


class RawRoute(APIRoute):
    def get_route_handler(self) -> Endpoint:
        return self.endpoint


def protocol_router(tag: str) -> APIRouter:
    """One router per protocol; every route on it is a `RawRoute`."""
    return APIRouter(tags=[tag], route_class=RawRoute)

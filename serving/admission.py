"""Admission: the bound on requests in flight, and what a refused request costs."""

from __future__ import annotations

from crossdeploy.errors import Overloaded

from .error_responses import TORCHSERVE_PREFIXES, error_response


class InFlightLimit:
    """Pure ASGI middleware: beyond `limit` concurrent POSTs/PUTs, answer 503 + Retry-After at once instead of
    queueing without bound."""

    def __init__(self, app, limit: int, metrics, retry_after: int = 1):
        self.app, self.limit, self.metrics = app, limit, metrics
        self.current = 0
        metrics.in_flight = lambda: self.current
        # Refusing must cost little when it happens most: each protocol's answer is built once and replayed.
        refused = Overloaded(limit, retry_after)
        headers = {"Retry-After": str(refused.retry_after)}
        self.refusals = {torchserve: error_response(TORCHSERVE_PREFIXES[0] if torchserve else "/", 503, str(refused), headers)
                         for torchserve in (False, True)}

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT"):  # PUT: TorchServe's curl -T
            return await self.app(scope, receive, send)
        if self.current >= self.limit:
            self.metrics.rejected.labels("overloaded").inc()
            return await self.refusals[scope["path"].startswith(TORCHSERVE_PREFIXES)](scope, receive, send)
        self.current += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.current -= 1

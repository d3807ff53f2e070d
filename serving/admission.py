"""Admission: the bound on requests in flight, a short first-come-first-served wait for a free slot, and a refusal
that costs next to nothing.

Under overload the gateway must spend its CPU serving, not saying no. Refusing at once lets a client that resends
at once (most do) come back within microseconds, so the loop ends up answering 503s at tens of thousands per second
and serving less and less. Here a request beyond the bound waits up to `wait_s` for a slot handed over in arrival
order; only when none frees in time (or `max_waiting` already wait) is it refused — 503 + Retry-After, the
protocol's own error body, encoded once at start and replayed. A waiting request costs a future and a timer, no
CPU, and a client resending at once is slowed to one refusal per `wait_s`. Served requests wait at most `wait_s`
longer, which bounds the latency overload adds.
"""

from __future__ import annotations

import asyncio
from collections import deque

from crossdeploy.errors import Overloaded

from .error_responses import TORCHSERVE_PREFIXES, error_response


class InFlightLimit:
    """Pure ASGI middleware over POSTs and PUTs (TorchServe's curl -T): at most `limit` in flight, up to
    `max_waiting` more waiting at most `wait_s` each for a slot, any other refused."""

    def __init__(self, app, limit: int, metrics, retry_after: int = 1, wait_s: float = 0.25, max_waiting: int | None = None):
        self.app, self.limit, self.metrics = app, limit, metrics
        self.wait_s = wait_s
        self.max_waiting = 16 * limit if max_waiting is None else max_waiting
        self.current = 0
        self.queued = 0  # waiting and not yet admitted or expired
        self.waiting: deque[asyncio.Future] = deque()  # may hold expired ones, skipped when a slot is handed over
        metrics.in_flight = lambda: self.current
        metrics.waiting = lambda: self.queued
        refused = Overloaded(limit, retry_after)
        headers = {"Retry-After": str(refused.retry_after)}
        self.refusals = {torchserve: error_response(TORCHSERVE_PREFIXES[0] if torchserve else "/", 503, str(refused), headers)
                         for torchserve in (False, True)}

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT"):
            return await self.app(scope, receive, send)
        if self.current < self.limit and not self.queued:
            self.current += 1
        elif not await self._wait_for_slot():
            self.metrics.rejected.labels("overloaded").inc()
            return await self.refusals[scope["path"].startswith(TORCHSERVE_PREFIXES)](scope, receive, send)
        try:
            await self.app(scope, receive, send)
        finally:
            self._release()

    async def _wait_for_slot(self) -> bool:
        """True once a finishing request has handed its slot over (the count stays as it was); False when none
        did within `wait_s`, or too many wait already."""
        if self.wait_s <= 0 or self.queued >= self.max_waiting:
            return False
        loop = asyncio.get_running_loop()
        slot = loop.create_future()
        self.waiting.append(slot)
        self.queued += 1
        timer = loop.call_later(self.wait_s, self._expire, slot)
        try:
            return await slot
        except asyncio.CancelledError:
            if slot.cancelled():  # cancelled while still waiting
                self.queued -= 1
            elif slot.result():
                self._release()  # handed a slot it will never use: pass it on
            raise
        finally:
            timer.cancel()

    def _expire(self, slot: asyncio.Future) -> None:
        if not slot.done():
            self.queued -= 1
            slot.set_result(False)

    def _release(self) -> None:
        while self.waiting:
            slot = self.waiting.popleft()
            if not slot.done():
                self.queued -= 1
                slot.set_result(True)  # the slot goes to the longest waiting request, still counted in `current`
                return
        self.current -= 1

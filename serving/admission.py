"""Admission: at most `limit` requests in flight, a short first-come-first-served wait for a free slot, and a
refusal that costs next to nothing — decided in the HTTP protocol, before the app sees the request.

Under overload the gateway must spend its CPU serving, not saying no. A refusal made by the app costs nearly what
serving does: uvicorn makes a task per request and the request walks every middleware before anything can say no,
so at four times capacity the event loop spent its time refusing, fell seconds behind, and even its health
endpoint answered after 15 s. Here the protocol (uvicorn's httptools protocol, extended) decides when a request's
headers are in:
  - a slot is free: the request runs, and hands its slot on when done;
  - none is: the request waits up to `wait_s` for one, in arrival order, costing a timer and no task; a client
    that resends at once when refused is thereby slowed to one refusal per `wait_s`;
  - none frees in time, or `max_waiting` already wait: 503 + Retry-After in the protocol's own error body,
    encoded once and written straight to the socket.
Only POSTs and PUTs (TorchServe's curl -T) are counted; health, metadata and metrics stay answerable under load.
"""

from __future__ import annotations

import asyncio
from collections import deque
from functools import cached_property
from typing import Callable

from crossdeploy.errors import Overloaded

from .error_responses import TORCHSERVE_PREFIXES, error_response

COUNTED = ("POST", "PUT")
BODY_GRACE_S = 1.0  # how long a refused request's body may take to arrive before the refusal goes out anyway


class Waiter:
    __slots__ = ("start", "refuse", "timer", "live")

    def __init__(self, start: Callable[[], bool], refuse: Callable[[], None]):
        self.start, self.refuse = start, refuse
        self.timer: asyncio.TimerHandle | None = None
        self.live = True


class Admission:
    """The slots, the queue of waiters and the pre-encoded refusals; one per app, shared by its connections."""

    def __init__(self, limit: int, metrics, retry_after: int = 1, wait_s: float = 0.1, max_waiting: int | None = None):
        self.limit, self.metrics, self.wait_s = limit, metrics, wait_s
        self.max_waiting = limit if max_waiting is None else max_waiting
        self.current = 0
        self.queued = 0  # live waiters; `waiting` may also hold expired ones, skipped when a slot is handed on
        self.waiting: deque[Waiter] = deque()
        metrics.in_flight = lambda: self.current
        metrics.waiting = lambda: self.queued
        self.rejected = metrics.rejected.labels("overloaded")
        refused = Overloaded(limit, retry_after)
        self.refusals = {torchserve: _encoded(error_response(TORCHSERVE_PREFIXES[0] if torchserve else "/", 503, str(refused),
                                                             {"Retry-After": str(refused.retry_after)}))
                         for torchserve in (False, True)}

    def admit(self) -> bool:
        if self.current < self.limit and not self.queued:
            self.current += 1
            return True
        return False

    def wait(self, start: Callable[[], bool], refuse: Callable[[], None]) -> bool:
        """Queues a request for the next free slot: `start()` runs it (False if its client has gone), `refuse()`
        answers 503 when no slot came within `wait_s`. False when it may not wait at all."""
        if self.wait_s <= 0 or self.queued >= self.max_waiting:
            return False
        waiter = Waiter(start, refuse)
        waiter.timer = asyncio.get_running_loop().call_later(self.wait_s, self._expire, waiter)
        self.waiting.append(waiter)
        self.queued += 1
        return True

    def release(self) -> None:
        """A request is done: its slot goes to the longest-waiting live request, or back to the pool."""
        while self.waiting:
            waiter = self.waiting.popleft()
            if not waiter.live:
                continue
            waiter.live = False
            self.queued -= 1
            waiter.timer.cancel()
            if waiter.start():  # the slot stays counted in `current`, now for this request
                return
        self.current -= 1

    def _expire(self, waiter: Waiter) -> None:
        if waiter.live:
            waiter.live = False
            self.queued -= 1
            waiter.refuse()

    def refusal(self, path: str, default_headers: list[tuple[bytes, bytes]], keep_alive: bool) -> bytes:
        self.rejected.inc()
        head, body = self.refusals[path.startswith(TORCHSERVE_PREFIXES)]
        server = b"".join(b"%s: %s\r\n" % pair for pair in default_headers)  # date and server, as uvicorn sends them
        return head + server + (b"" if keep_alive else b"connection: close\r\n") + b"\r\n" + body


def _encoded(response) -> tuple[bytes, bytes]:
    """A Starlette response as the bytes of its status line and headers (without the blank line) and its body."""
    lines = [b"HTTP/1.1 %d Service Unavailable" % response.status_code]
    lines += [b"%s: %s" % (name, value) for name, value in response.raw_headers]
    return b"\r\n".join(lines) + b"\r\n", response.body


class Released:
    """The app, handing the request's slot on when the request is done (however it ends)."""

    def __init__(self, app, admission: Admission):
        self.app, self.admission = app, admission

    async def __call__(self, scope, receive, send):
        try:
            await self.app(scope, receive, send)
        finally:
            self.admission.release()


class AdmittingProtocol:
    """Mixed into uvicorn's HttpToolsProtocol (see server_options.py) with `admission` set on the class. A refused
    request is answered once its body is in (normally in the same read as its headers), so the connection stays
    usable; the body itself is dropped unread."""

    admission: Admission

    def _start_asgi_task(self, cycle, app) -> None:
        if app is not self.app or cycle.scope["method"] not in COUNTED:
            return super()._start_asgi_task(cycle, app)
        admission, released = self.admission, self._released
        if admission.admit():
            return super()._start_asgi_task(cycle, released)
        if not admission.wait(lambda: self._start_late(cycle, released), lambda: self._refuse(cycle, now=True)):
            self._refuse(cycle)

    @cached_property
    def _released(self) -> Released:
        return Released(self.app, self.admission)

    def _start_late(self, cycle, released) -> bool:
        if self.transport.is_closing() or cycle.disconnected:
            return False
        super()._start_asgi_task(cycle, released)
        return True

    def _refuse(self, cycle, now: bool = False) -> None:
        """503 for `cycle`. Refused as its headers came in, it is answered once its body is in (normally within
        the same read; the connection stays usable), or after a second with the connection closed; refused after
        waiting for a slot (`now`), at once, closing the connection if the body is still on its way."""
        if self.transport.is_closing() or cycle.disconnected or cycle.response_complete:
            return
        if cycle.more_body and not now:
            cycle.refused = True
            self.loop.call_later(BODY_GRACE_S, self._refuse, cycle, True)
            return
        cycle.response_started = True
        self._send_refusal(cycle)
        if cycle.more_body:  # the rest of a slow body is not worth waiting for
            self.transport.close()

    def on_message_complete(self) -> None:
        cycle = self.cycle
        if cycle is not None and getattr(cycle, "refused", False):
            if not cycle.response_complete:
                cycle.more_body = False
                cycle.response_started = True
                self._send_refusal(cycle)
            return
        super().on_message_complete()

    def _send_refusal(self, cycle) -> None:
        self.transport.write(self.admission.refusal(cycle.scope["path"], self.server_state.default_headers, cycle.keep_alive))
        cycle.response_complete = True
        cycle.message_event.set()
        if not cycle.keep_alive:
            self.transport.close()
        self.on_response_complete()

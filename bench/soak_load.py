"""The soak's traffic: a mix of pre-encoded requests (every variant in every protocol) sent open-loop at a rate
and closed-loop by clients that resend at once when refused, every answer filed by kind in one-second windows.

Open loop: a request is due at its time whatever the server does, and its latency runs from when it was due, so
a server that stalls shows in the percentiles (and in the client's queue for a free connection) instead of slowing
the client down. A request unanswered after `timeout_s` is closed and counted as a timeout: nothing is dropped
silently. Raw latencies live only while their window is open; a window keeps counts and percentiles.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, deque
from dataclasses import dataclass, field

import numpy as np

from .loadgen import Connection, Target

OK, REFUSED, REFUSED_BARE = "ok", "503", "503-no-retry-after"


def kind_of(status: int, retry_after: bool) -> str:
    if status < 400:
        return OK
    if status == 503:
        return REFUSED if retry_after else REFUSED_BARE
    return str(status)


class Answering(Connection):
    """A keep-alive connection that also notes whether an answer carried Retry-After."""

    def __init__(self) -> None:
        super().__init__()
        self.retry_after = False
        self.sent_at = 0.0

    def on_header(self, name: bytes, value: bytes) -> None:  # httptools' callback
        if name.lower() == b"retry-after":
            self.retry_after = True

    async def ask(self, request: bytes) -> tuple[int, bool, float]:
        """(status, whether Retry-After came, seconds from writing the request to the whole answer)."""
        self.retry_after = False
        sent = self.sent_at = time.perf_counter()
        status = await self.roundtrip(request)
        self.sent_at = 0.0
        return status, self.retry_after, time.perf_counter() - sent


@dataclass
class Tally:
    """One second of answers, by the second they completed in."""

    kinds: Counter = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)  # ms from when due, answered ok only
    on_wire: list[float] = field(default_factory=list)  # ms from when written to the socket, answered ok only


@dataclass
class Recorder:
    start: float
    windows: dict[int, Tally] = field(default_factory=dict)

    def file(self, kind: str, latency_s: float | None = None, on_wire_s: float | None = None) -> None:
        second = int(time.perf_counter() - self.start)
        tally = self.windows.get(second)
        if tally is None:
            tally = self.windows[second] = Tally()
        tally.kinds[kind] += 1
        if kind == OK and latency_s is not None:
            tally.latencies.append(latency_s * 1e3)
            tally.on_wire.append(on_wire_s * 1e3)

    def take(self, before_second: int) -> list[tuple[int, Tally]]:
        """The windows that can no longer change (ended before `before_second`), removed from the recorder."""
        done = sorted(s for s in self.windows if s < before_second)
        return [(s, self.windows.pop(s)) for s in done]


class Pool:
    """Keep-alive connections to the gateway, opened on demand up to `limit`; beyond it a request waits for a
    free one in arrival order (its latency running from when it was due)."""

    def __init__(self, target: Target, limit: int):
        self.target, self.limit = target, limit
        self.idle: list[Answering] = []
        self.busy: set[Answering] = set()
        self.opened = 0
        self.waiters: deque[asyncio.Future] = deque()

    async def take(self) -> Answering:
        while self.idle and self.idle[-1].transport.is_closing():  # closed by the server while idle (keep-alive timeout)
            self.idle.pop()
            self.opened -= 1
        if self.idle:
            connection = self.idle.pop()
        elif self.opened < self.limit:
            self.opened += 1
            try:
                _, connection = await asyncio.get_running_loop().create_connection(Answering, self.target.host, self.target.port)
            except OSError:
                self.opened -= 1
                raise
        else:
            handed = asyncio.get_running_loop().create_future()
            self.waiters.append(handed)
            connection = await handed
            if connection is None:  # the one freed was closed: open a fresh one in its place
                return await self.take()
        self.busy.add(connection)
        return connection

    def give(self, connection: Answering, healthy: bool) -> None:
        self.busy.discard(connection)
        healthy = healthy and not connection.transport.is_closing()
        if not healthy:
            connection.close()
            self.opened -= 1
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(connection if healthy else None)
                return
        if healthy:
            self.idle.append(connection)

    def expire(self, timeout_s: float) -> int:
        """Closes connections whose request has waited longer than `timeout_s`: their callers count a timeout."""
        now, expired = time.perf_counter(), 0
        for connection in list(self.busy):
            if connection.sent_at and now - connection.sent_at > timeout_s:
                connection._fail(TimeoutError("no answer in time"))
                connection.close()
                expired += 1
        return expired

    def close(self) -> None:
        for connection in self.idle + list(self.busy):
            connection.close()


class Traffic:
    """Drives one gateway with a request mix; `run(schedule)` plays phases of (seconds, rate, closed clients)."""

    def __init__(self, target: Target, requests: list[bytes], timeout_s: float = 10.0, max_connections: int = 1024):
        self.requests = requests
        self.timeout_s = timeout_s
        self.pool = Pool(target, max_connections)
        self.next = 0
        self.recorder: Recorder | None = None

    def _request(self) -> bytes:
        self.next = (self.next + 1) % len(self.requests)
        return self.requests[self.next]

    async def _one(self, due: float, request: bytes) -> str:
        try:
            connection = await self.pool.take()
        except OSError:
            self.recorder.file("connect")
            return "connect"
        healthy, on_wire = True, None
        try:
            status, retry_after, on_wire = await connection.ask(request)
            kind = kind_of(status, retry_after)
        except TimeoutError:
            kind, healthy = "timeout", False
        except OSError:
            kind, healthy = "reset", False
        self.pool.give(connection, healthy)
        self.recorder.file(kind, time.perf_counter() - due, on_wire)
        return kind

    async def _open_loop(self, rate: float, until: float, tasks: set) -> None:
        """Launches every request due by now at each wake-up (a millisecond apart): a sleep per request would
        cost more than the requests at thousands per second."""
        if rate <= 0:
            return
        step = 1.0 / rate
        due = time.perf_counter()
        while due < until:
            now = time.perf_counter()
            while due <= now and due < until:
                task = asyncio.ensure_future(self._one(due, self._request()))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                due += step
            await asyncio.sleep(0.001)

    async def _closed_client(self, until: float) -> None:
        """A client that sends its next request as soon as an answer is in, and resends at once when refused."""
        while time.perf_counter() < until:
            kind = await self._one(time.perf_counter(), self._request())
            if kind in ("connect", "reset"):
                await asyncio.sleep(0.01)

    async def _phase(self, seconds: float, rate: float, clients: int) -> None:
        until = time.perf_counter() + seconds
        tasks: set = set()
        work = [self._open_loop(rate, until, tasks)] + [self._closed_client(until) for _ in range(clients)]
        await asyncio.gather(*work)
        if tasks:  # the open loop's last requests are answered or time out (the sweeper sees to it)
            await asyncio.wait(list(tasks))

    async def _sweep(self, stop: asyncio.Event, on_window) -> None:
        while not stop.is_set():
            await asyncio.sleep(0.25)
            self.pool.expire(self.timeout_s)
            for second, tally in self.recorder.take(int(time.perf_counter() - self.recorder.start)):
                on_window(second, tally)

    async def run(self, phases: list[tuple[str, float, float, int]], on_window, on_phase=None) -> None:
        """`phases`: (name, seconds, open-loop rate, closed-loop clients). `on_window(second, tally)` gets each
        finished second; `on_phase(name, start_second)` each phase as it begins."""
        self.recorder = Recorder(time.perf_counter())
        stop = asyncio.Event()
        sweeper = asyncio.ensure_future(self._sweep(stop, on_window))
        try:
            for name, seconds, rate, clients in phases:
                if on_phase:
                    on_phase(name, time.perf_counter() - self.recorder.start)
                await self._phase(seconds, rate, clients)
        finally:
            stop.set()
            await sweeper
            for second, tally in self.recorder.take(1 << 30):
                on_window(second, tally)
            self.pool.close()


def summarize(tally: Tally) -> dict:
    """A second's counts and percentiles (None when nothing was served in it)."""
    latencies, on_wire = np.asarray(tally.latencies), np.asarray(tally.on_wire)
    p50, p99, top = (*np.percentile(latencies, [50, 99]), latencies.max()) if latencies.size else (None, None, None)
    wire99 = np.percentile(on_wire, 99) if on_wire.size else None
    return {"answers": sum(tally.kinds.values()), "kinds": dict(tally.kinds), "ok": tally.kinds.get(OK, 0),
            "p50_ms": _float(p50), "p99_ms": _float(p99), "max_ms": _float(top), "p99_on_wire_ms": _float(wire99)}


def _float(value) -> float | None:
    return None if value is None else float(value)

"""A small HTTP/1.1 load generator on uvloop with pre-encoded requests and keep-alive connections.

Closed loop: C connections, each sends its next request when the previous answer is in (wrk's model).
Open loop: requests are due at a fixed rate whatever the server does; each latency is measured from the time
the request was *due*, so a stalled server shows in the percentiles instead of silently slowing the client
(coordinated omission — what wrk2 and perf_analyzer's request-rate mode correct for).

Every latency is recorded (no histogram rounding). The generator's own CPU time is measured per window so a
starved client is visible; `bench/run.py` cross-checks it against wrk on one scenario.
"""

from __future__ import annotations

import asyncio
import socket
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import httptools
import numpy as np
import uvloop

from .stats import Window


@dataclass(frozen=True)
class Target:
    host: str
    port: int
    path: str

    @classmethod
    def parse(cls, url: str) -> "Target":
        parts = urlsplit(url)
        return cls(parts.hostname or "127.0.0.1", parts.port or 80, parts.path or "/")


def encode_request(target: Target, body: bytes, headers: dict[str, str], method: str = "POST") -> bytes:
    lines = [f"{method} {target.path} HTTP/1.1", f"Host: {target.host}:{target.port}", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class Connection(asyncio.Protocol):
    """One keep-alive connection; httptools' response parser (uvicorn's, in C) reads the answers, whether they come
    with a Content-Length or chunked."""

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.answer: asyncio.Future | None = None

    @classmethod
    async def open(cls, target: Target) -> "Connection":
        _, connection = await asyncio.get_running_loop().create_connection(cls, target.host, target.port)
        return connection

    def connection_made(self, transport) -> None:
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(ConnectionError(f"unreadable response: {exc}"))

    def on_message_complete(self) -> None:  # httptools' callback: the whole response is in
        if self.answer and not self.answer.done():
            self.answer.set_result(self.parser.get_status_code())

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(exc or ConnectionResetError("the server closed the connection"))

    def _fail(self, exc: Exception) -> None:
        if self.answer and not self.answer.done():
            self.answer.set_exception(exc)

    async def roundtrip(self, request: bytes) -> int:
        """Sends one request, waits for the whole answer; returns its status."""
        if self.transport is None or self.transport.is_closing():
            raise ConnectionResetError("the connection is closed")
        self.answer = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return await self.answer

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class LoadGenerator:
    """Owns one event loop; each call runs one measurement window and returns it."""

    def __init__(self) -> None:
        self.loop = uvloop.new_event_loop()

    def close(self) -> None:
        self.loop.close()

    def closed_loop(self, target: Target, request: bytes, concurrency: int, seconds: float, rows: int) -> tuple[Window, float]:
        return self.loop.run_until_complete(self._closed(target, request, concurrency, seconds, rows))

    def open_loop(self, target: Target, request: bytes, rate: float, seconds: float, rows: int,
                  max_connections: int = 256) -> tuple[Window, float]:
        return self.loop.run_until_complete(self._open(target, request, rate, seconds, rows, max_connections))

    async def _closed(self, target, request, concurrency, seconds, rows):
        connections = [await Connection.open(target) for _ in range(concurrency)]
        latencies: list[float] = []
        errors = 0
        cpu0, start = time.process_time(), time.perf_counter()
        deadline = start + seconds

        async def worker(connection: Connection):
            nonlocal errors
            while time.perf_counter() < deadline:
                sent = time.perf_counter()
                try:
                    status = await connection.roundtrip(request)
                except OSError:
                    errors += 1
                    connection.close()
                    try:
                        connection = await Connection.open(target)
                    except OSError:
                        await asyncio.sleep(0.01)
                    continue
                if status < 400:  # a refusal (503, 4xx) is an error, never a fast latency
                    latencies.append((time.perf_counter() - sent) * 1e3)
                else:
                    errors += 1

        await asyncio.gather(*(worker(c) for c in connections))
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu0
        for c in connections:
            c.close()
        return Window(np.asarray(latencies), elapsed, rows * len(latencies), errors=errors), cpu

    async def _open(self, target, request, rate, seconds, rows, max_connections):
        idle: list[Connection] = [await Connection.open(target) for _ in range(min(8, max_connections))]
        opened = len(idle)
        latencies: list[float] = []
        errors = 0
        available = asyncio.Condition()
        count = max(1, int(rate * seconds))
        cpu0, start = time.process_time(), time.perf_counter()

        async def one(due: float):
            nonlocal errors, opened
            async with available:
                while not idle and opened >= max_connections:
                    await available.wait()
                connection = idle.pop() if idle else None
                if connection is None:
                    opened += 1
            try:
                if connection is None:
                    connection = await Connection.open(target)
                status = await connection.roundtrip(request)
                if status < 400:  # from when it was due, not when it went out; a refusal is an error
                    latencies.append((time.perf_counter() - due) * 1e3)
                else:
                    errors += 1
            except OSError:
                errors += 1
                if connection is not None:
                    connection.close()
                try:
                    connection = await Connection.open(target)
                except OSError:
                    async with available:
                        opened -= 1
                        available.notify()
                    return
            async with available:
                idle.append(connection)
                available.notify()

        tasks = []
        for i in range(count):
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.ensure_future(one(due)))
        done, pending = await asyncio.wait(tasks, timeout=30)
        for task in pending:
            task.cancel()
        errors += len(pending)
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu0
        for c in idle:
            c.close()
        return Window(np.asarray(latencies), elapsed, rows * len(latencies), errors=errors), cpu

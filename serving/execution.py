"""Running one call of a served version, inline or on its executor, under the inference deadline.

A runtime is foreign code: it may raise, hang or be slow, and none of that may reach another variant. Its
exceptions become `InferenceFailed` (500) unless they are crossdeploy's own named errors (a caller's error
stays 4xx). A call on the version's one-thread executor that runs past the deadline is answered 504; the
thread cannot be stopped, so the entry is *stalled* (`Served.stalled`) until the call returns: requests to it
are refused at once (503) instead of queueing behind it, its ready endpoints say so, and a reload replaces the
entry with a fresh executor meanwhile. A call still queued when its deadline passes is skipped when reached.

The inline path (the event loop itself runs calls estimated cheaper than a thread hop) cannot be bounded: a
call that hangs there holds the loop. It is narrowed to versions with a record of being fast that never
overran: the first call of every version runs on its executor, and a version that overran the deadline once,
on either path or in a health probe, never runs inline again. See docs/gateway.md, "Faults".
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import Callable

import numpy as np

from crossdeploy.errors import CrossdeployError, InferenceFailed, InferenceTimeout, ModelNotReady, first_line

from .registry import Retired, Served

log = logging.getLogger("crossdeploy.gateway")


def _nothing() -> None:
    pass


class Gate:
    """At most `slots` executor calls run at once, across every variant, handed on in arrival order.

    Each variant has its own thread, and under load every one of them has work: ten threads that run Python
    (TensorFlow eager, Keras, torch) then queue for the GIL beside the event loop, which got it a tenth of the
    time and fell seconds behind on reading requests. Through the gate the loop competes with `slots` threads.
    A call that runs longer than `hold_s` gives its slot up (it keeps running): a slow or hung variant holds
    the others back at most that long."""

    def __init__(self, slots: int, hold_s: float = 0.25):
        self.free, self.hold_s = slots, hold_s
        self.waiters: deque[asyncio.Future] = deque()

    async def enter(self) -> Callable[[], None]:
        """Waits for a slot; returns the one function that gives it back (idempotent, also called on `hold_s`)."""
        if self.free > 0 and not self.waiters:
            self.free -= 1
        else:
            slot = asyncio.get_running_loop().create_future()
            self.waiters.append(slot)
            try:
                await slot
            except asyncio.CancelledError:
                if slot.done() and not slot.cancelled():
                    self._leave()
                raise
        left = False

        def leave() -> None:
            nonlocal left
            if not left:
                left = True
                timer.cancel()
                self._leave()
        timer = asyncio.get_running_loop().call_later(self.hold_s, leave)
        return leave

    def _leave(self) -> None:
        while self.waiters:
            slot = self.waiters.popleft()
            if not slot.done():
                slot.set_result(None)
                return
        self.free += 1


class Call:
    """One call handed to an executor: when its thread began it, and whether its caller gave up waiting."""

    __slots__ = ("began", "abandoned")

    def __init__(self) -> None:
        self.began = 0
        self.abandoned = False


def refuse_if_stalled(served: Served) -> None:
    if served.running_since and served.stalled:
        raise ModelNotReady(served.name, f"a call has been running past the {served.limits.deadline_s:g} s "
                                         "inference deadline; it answers again when that call returns or after a reload")


def failed(served: Served, exc: Exception) -> InferenceFailed:
    """The runtime's own exception as the variant's fault, in one line; the first one is logged whole."""
    served.raised += 1
    if served.raised == 1:
        log.error("%s v%s: the runtime raised", served.name, served.version, exc_info=exc)
    return InferenceFailed(served.name, first_line(exc))


def inline(served: Served, inputs: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], int, int]:
    started = time.perf_counter_ns()
    try:
        outputs = served.runtime.predict_validated(inputs)
    except CrossdeployError:
        raise
    except Exception as exc:
        raise failed(served, exc) from exc
    finished = time.perf_counter_ns()
    if finished - started > served.limits.deadline_s * 1e9:  # too late to stop it; never again on the loop
        served.inline_banned = True
        raise InferenceTimeout(served.name, served.limits.deadline_s)
    return outputs, started, finished


async def wait_idle(served: Served) -> None:
    """Waits for this version's executor calls to finish (an inline call must not run beside them)."""
    try:
        async with asyncio.timeout(served.limits.deadline_s):
            while served.pending:
                await served.executor_idle.wait()
    except TimeoutError:
        raise InferenceTimeout(served.name, served.limits.deadline_s) from None
    refuse_if_stalled(served)


async def _within_deadline(future: asyncio.Future, seconds: float) -> bool:
    """Whether `future` finished within `seconds`. Only a waiter of its own is awaited: neither the deadline nor
    a cancelled request marks the call done while its thread still runs it (asyncio.wait_for over a shield
    does the same at about twice the cost per call)."""
    waiter = asyncio.get_running_loop().create_future()

    def wake(_=None):
        if not waiter.done():
            waiter.set_result(None)
    future.add_done_callback(wake)
    timer = waiter.get_loop().call_later(seconds, wake)
    try:
        await waiter
    finally:
        timer.cancel()
    return future.done()


async def on_executor(served: Served, inputs: dict[str, np.ndarray],
                      predict: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]] | None = None,
                      ) -> tuple[dict[str, np.ndarray], int, int, int]:
    """(outputs, began, finished, queued ns) of one call of `predict` (the runtime's `predict_validated` by
    default) on the version's executor, within the deadline."""
    submitted = time.perf_counter_ns()
    call = Call()
    gate = served.limits.gate
    served.gated += 1  # counted against the version's queue budget while it waits for the gate
    try:
        leave = await gate.enter() if gate is not None else _nothing
    finally:
        served.gated -= 1

    def work():
        if call.abandoned:  # its caller was answered 504 while it queued
            return None
        call.began = served.running_since = time.perf_counter_ns()
        try:
            result = (predict or served.runtime.predict_validated)(inputs)
        finally:
            served.running_since = 0
        return result, call.began, time.perf_counter_ns()

    try:
        future = asyncio.get_running_loop().run_in_executor(served.executor, work)
    except RuntimeError:  # the executor refuses new calls once shut down, which only a (re)load does
        leave()
        if served.retired:
            raise Retired(served.name) from None
        raise
    served.pending += 1  # down when the thread is done, even if this request stopped waiting meanwhile
    served.executor_idle.clear()

    def done(finished_future):
        leave()
        if not finished_future.cancelled():
            finished_future.exception()  # read here: a caller that gave up never will, and asyncio would warn
        served.pending -= 1
        if not served.pending:
            served.executor_idle.set()
    future.add_done_callback(done)
    if not await _within_deadline(future, served.limits.deadline_s):
        call.abandoned = True
        served.inline_banned = True
        raise InferenceTimeout(served.name, served.limits.deadline_s)
    try:
        outputs, started, finished = future.result()
    except CrossdeployError:
        raise
    except Exception as exc:
        raise failed(served, exc) from exc
    return outputs, started, finished, started - submitted


async def remotely(served: Served, inputs: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], int, int]:
    """(outputs, inference ns, queue ns) of one call of a version another process runs (the Ray engine's
    replicas, which queue, refuse and time calls out themselves), within the deadline here too. The queue is
    the round trip less the replica's compute: the routing, the transfer and the wait for a replica."""
    started = time.perf_counter_ns()
    try:
        async with asyncio.timeout(served.limits.deadline_s):
            outputs, compute_ns = await served.remote.infer(inputs)
    except TimeoutError:
        raise InferenceTimeout(served.name, served.limits.deadline_s) from None
    return outputs, compute_ns, max(time.perf_counter_ns() - started - compute_ns, 0)

"""Overload inside the gateway, on real runtimes slowed by a wrapper (the frameworks run untouched): a variant
whose queue holds more than its budget refuses at once with 503 + Retry-After while the others serve, and
executor calls pass a gate so that only so many run beside the event loop at once — a call that runs long gives
its turn up rather than holding every other variant back."""

from __future__ import annotations

import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest

from crossdeploy.repository import ModelRepository

from .live import LiveGateway

pytestmark = pytest.mark.slow
SLOW, OTHER, FAST = "keras-savedmodel", "torch-torchscript", "torch-onnx"
BODY = {"inputs": [{"name": "image", "datatype": "FP32", "shape": [1, 8, 8],
                    "data": np.random.default_rng(3).uniform(0, 16, 64).round(2).tolist()}]}


class Slowed:
    """The served adapter, each call `seconds` longer; records how many calls of all wrapped adapters overlap."""

    running = 0
    most = 0
    lock = threading.Lock()

    def __init__(self, runtime, seconds: float):
        self.real, self.seconds = runtime, seconds

    def __getattr__(self, name):
        return getattr(self.real, name)

    def predict_validated(self, arrays):
        with Slowed.lock:
            Slowed.running += 1
            Slowed.most = max(Slowed.most, Slowed.running)
        try:
            time.sleep(self.seconds)
            return self.real.predict_validated(arrays)
        finally:
            with Slowed.lock:
                Slowed.running -= 1


@pytest.fixture
def repository3(repository, tmp_path) -> ModelRepository:
    root = tmp_path / "model_repository"
    for name in (SLOW, OTHER, FAST):
        shutil.copytree(repository.root / name, root / name)
    return ModelRepository(root)


def slow_down(live: LiveGateway, name: str, seconds: float) -> None:
    entry = live.app.state.gateway.registry.get(name)
    entry.runtime = Slowed(entry.runtime, seconds)
    entry.inline_banned = True  # a slowed variant is an executor variant, whatever it measured before
    entry.cost.ns_per_row = seconds * 1e9


def post(http: httpx.Client, name: str) -> httpx.Response:
    return http.post(f"/v2/models/{name}/infer", json=BODY)


def test_a_variant_over_its_queue_budget_refuses_at_once_and_the_others_serve(repository3):
    Slowed.running = Slowed.most = 0
    with LiveGateway(repository3, max_queue_ms=400, executor_slots=0) as live, \
            httpx.Client(base_url=live.url, timeout=60, limits=httpx.Limits(max_connections=64)) as http:
        slow_down(live, SLOW, 0.1)
        with ThreadPoolExecutor(24) as pool:
            flood = [pool.submit(post, http, SLOW) for _ in range(20)]
            time.sleep(0.2)  # the flood is queued: the other variants answer meanwhile
            others = [post(http, name) for name in (OTHER, FAST) for _ in range(3)]
            answers = [f.result() for f in flood]
    assert all(o.status_code == 200 for o in others), [o.text for o in others]
    statuses = sorted(a.status_code for a in answers)
    assert set(statuses) == {200, 503} and statuses.count(200) >= 3, statuses  # ~4 fit in 400 ms of 100 ms calls
    busy = next(a for a in answers if a.status_code == 503)
    assert "is busy" in busy.json()["error"] and busy.headers["Retry-After"] == "1"


def test_the_variant_refusal_is_counted_by_kind(repository3):
    with LiveGateway(repository3, max_queue_ms=150, executor_slots=0) as live, \
            httpx.Client(base_url=live.url, timeout=60) as http:
        slow_down(live, SLOW, 0.1)
        with ThreadPoolExecutor(8) as pool:
            statuses = [f.result().status_code for f in [pool.submit(post, http, SLOW) for _ in range(8)]]
        assert 503 in statuses, statuses
        counted = [line for line in http.get("/metrics").text.splitlines()
                   if line.startswith("crossdeploy_failures_total{") and 'kind="overloaded"' in line and SLOW in line]
        assert counted and float(counted[0].rsplit(" ", 1)[1]) == statuses.count(503), counted


@pytest.mark.parametrize("slots, seconds, most", [(1, 0.1, 1), (2, 0.1, 2), (1, 0.6, 2)])
def test_executor_calls_pass_the_gate(repository3, slots, seconds, most):
    """One slot: two slowed variants never run at once. Two slots: they do. A call longer than the gate's hold
    (250 ms) gives its turn up, so the other variant's call starts before it ends."""
    Slowed.running = Slowed.most = 0
    with LiveGateway(repository3, executor_slots=slots, max_queue_ms=60_000) as live, \
            httpx.Client(base_url=live.url, timeout=60) as http:
        slow_down(live, SLOW, seconds)
        slow_down(live, OTHER, seconds)
        with ThreadPoolExecutor(4) as pool:
            answers = [f.result() for f in [pool.submit(post, http, name) for name in (SLOW, OTHER) * 2]]
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
    assert Slowed.most == most

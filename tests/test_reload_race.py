"""Reloading a model while requests run on its executor: a request that took the replaced entry is still answered.

Every call here goes to the variant's executor (`inline_ms=0`), the path a slow variant or a large batch takes;
small requests run inline and never reach it.
"""

from __future__ import annotations

import asyncio
import shutil
import threading
import time

import httpx
import numpy as np
import orjson
import pytest

from crossdeploy.repository import ModelRepository
from crossdeploy.serving.core import Gateway
from crossdeploy.serving.metrics import Metrics
from crossdeploy.serving.registry import ModelRegistry

from .live import LiveGateway

pytestmark = pytest.mark.slow
NAME = "torch-onnx"
ROWS = 64
TOKEN = "test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
LARGE = 512  # rows: a decode long enough that a reload often lands between look-up and submission


@pytest.fixture
def onnx_repository(repository, tmp_path) -> ModelRepository:
    root = tmp_path / "model_repository"
    shutil.copytree(repository.root / NAME, root / NAME)
    return ModelRepository(root)


def digits(rows: int) -> np.ndarray:
    return np.random.default_rng(0).uniform(0, 16, size=(rows, 8, 8)).astype(np.float32)


def test_a_request_holding_the_replaced_entry_is_answered_after_the_swap(onnx_repository):
    """The reload lands between the request's look-up and its submission to the executor, every time."""
    registry = ModelRegistry(onnx_repository, threads=1)
    registry.load_all()
    gateway = Gateway(registry, Metrics(), max_batch=ROWS, inline_ms=0.0)
    image = digits(ROWS)
    expected = registry.get(NAME).runtime.predict({"image": image})
    held = []

    def decode_then_reload(served):
        held.append(served)
        if len(held) == 1:
            registry.load(NAME)  # what a concurrent POST .../load does at this instant
        return {"image": image}

    try:
        answered_by, outputs = asyncio.run(gateway.handle("v2", NAME, None, decode_then_reload, lambda served, out: (served, out)))
        assert answered_by is registry.get(NAME) is not held[0]  # answered by the replacement
        assert len(held) == 1  # the reload kept the config: the inputs decoded for it were not decoded again
        for output, values in expected.items():
            np.testing.assert_allclose(outputs[output], values, rtol=1e-5, atol=1e-5)
    finally:
        registry.close()


def test_reloading_under_executor_load_never_answers_5xx(onnx_repository):
    body = orjson.dumps({"inputs": [{"name": "image", "datatype": "FP32", "shape": [LARGE, 8, 8],
                                     "data": digits(LARGE).ravel().tolist()}]})
    # No queue budget here: a variant refusing under load (503) is another test's business, not the reload's.
    with LiveGateway(onnx_repository, inline_ms=0.0, max_queue_ms=600_000, model_control_mode="explicit",
                     management_token=TOKEN) as live, \
            httpx.Client(base_url=live.url, timeout=60) as http:
        statuses: list[int] = []
        refusals: list[str] = []
        stop = threading.Event()

        def hammer():
            with httpx.Client(base_url=live.url, timeout=60) as client:
                while not stop.is_set():
                    answer = client.post(f"/v2/models/{NAME}/infer", content=body)
                    statuses.append(answer.status_code)
                    if answer.status_code != 200:
                        refusals.append(answer.text)

        workers = [threading.Thread(target=hammer) for _ in range(3)]
        for worker in workers:
            worker.start()
        deadline = time.monotonic() + 60
        while len(statuses) < 10:
            assert time.monotonic() < deadline, "requests are not flowing"
            time.sleep(0.01)
        for _ in range(20):
            assert http.post(f"/v2/repository/models/{NAME}/load", headers=AUTH).status_code == 200
        stop.set()
        for worker in workers:
            worker.join(60)
        assert statuses and set(statuses) == {200}, ({s: statuses.count(s) for s in set(statuses)}, refusals[:3])

"""POST /v1/where/{name}: the page's "where?" — `crossdeploy diverge` on one input, run by a live gateway in a
child process: the answer and its plot, the cache, one diagnosis at a time, and every bad request refused in the
gateway's own error format."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest

from crossdeploy.models.data import load_split

from .live import LiveGateway

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def live(repository, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("where-work")
    with LiveGateway(repository, workdir=workdir) as gateway:
        gateway.workdir = workdir
        yield gateway


@pytest.fixture(scope="module")
def digits():
    return load_split(seed=0).x_test.astype(np.float32)


def _post(live, name: str, image, timeout: float = 300.0) -> httpx.Response:
    return httpx.post(f"{live.url}/v1/where/{name}", json={"image": np.asarray(image).tolist()}, timeout=timeout)


def test_one_digit_is_followed_along_the_chain_with_a_plot_and_asked_again_costs_nothing(live, digits, repository):
    first = _post(live, "torch-tflite", digits[0])
    assert first.status_code == 200, first.text
    answer = first.json()
    assert answer["variant"] == "torch-tflite" and answer["chain"][0] == "torch-eager" and answer["chain"][-1] == "torch-tflite"
    assert [h["name"] for h in answer["hops"]][:2] == ["torch -> ONNX", "ONNX -> TFLite (onnx2tf)"]
    assert answer["verdicts"] and not any(v.startswith("first divergence") for v in answer["verdicts"]), answer["verdicts"]
    assert answer["samples"] == 1 and answer["version"] == repository.get("torch-tflite")[1].version
    plot = httpx.get(live.url + answer["plot"])
    assert plot.status_code == 200 and plot.headers["content-type"] == "image/png" and plot.content[:4] == b"\x89PNG"
    # the same digit again is read back, not diagnosed again: one whole folder for it, untouched, the same answer
    (done,) = (live.workdir / "reports" / "where").glob("*/diverge.json")
    written = done.stat().st_mtime_ns
    assert _post(live, "torch-tflite", digits[0]).json() == answer and done.stat().st_mtime_ns == written
    assert sorted(p.name for p in done.parent.iterdir()) == ["diverge.json", "diverge.md", "diverge.png", "input.npy"]
    assert not list(done.parent.parent.glob("*.partial"))


def test_a_second_diagnosis_while_one_runs_is_told_to_retry(live, digits):
    folders = live.workdir / "reports" / "where"
    before = set(folders.glob("*")) if folders.exists() else set()
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(_post, live, "torch-onnx", digits[1])
        deadline = time.monotonic() + 60
        while not (set(folders.glob("*/input.npy")) - {f / "input.npy" for f in before}):
            assert time.monotonic() < deadline and not running.done(), "the first diagnosis never started"
            time.sleep(0.05)
        refused = _post(live, "torch-onnx", digits[2])
        assert refused.status_code == 503 and int(refused.headers["Retry-After"]) >= 1
        assert "another diagnosis is running" in refused.json()["error"]
        assert running.result().status_code == 200


ZEROS = "[" + ",".join(["[" + ",".join(["0"] * 8) + "]"] * 8) + "]"


@pytest.mark.parametrize("name, body, status, words", [
    ("no-such-variant", '{"image": %s}' % ZEROS, 404, "no-such-variant"),
    ("torch-onnx", '{"image": [[0, 1], [2, 3]]}', 400, "8 x 8"),
    ("torch-onnx", '{"image": %s}' % ZEROS.replace("0", "1e39", 1), 400, "infinity"),
    ("torch-onnx", '{"image": "three"}', 400, "numbers"),
    ("torch-onnx", '{"picture": %s}' % ZEROS, 400, "'image'"),
    ("torch-onnx", '{"image": [', 400, "malformed JSON"),
    ("torch-eager", '{"image": %s}' % ZEROS, 400, "no chain to follow"),  # the reference itself
])
def test_bad_requests_are_refused_in_the_gateways_error_format(live, name, body, status, words):
    response = httpx.post(f"{live.url}/v1/where/{name}", content=body, headers={"Content-Type": "application/json"},
                          timeout=300)
    assert response.status_code == status, response.text
    assert words in response.json()["error"]
    assert httpx.get(f"{live.url}/v2/health/ready").status_code == 200  # and the gateway keeps serving


def test_a_plot_that_was_never_made_is_404(live):
    response = httpx.get(f"{live.url}/v1/where/torch-onnx/{'0' * 20}.png")
    assert response.status_code == 404 and "POST /v1/where/torch-onnx" in response.json()["error"]

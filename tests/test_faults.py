"""A misbehaving runtime fails only its own variant: it raises, hangs, overruns inline, leaks, or its artifact
changes on disk while it is served. Faults are injected into the real loaded adapters of one served entry (a
wrapper around the adapter; torch, TF and ORT run untouched) or into the real artifact files; every other
variant (ONNX, TorchScript, TFLite, SavedModel) keeps answering the same outputs meanwhile, the health
endpoints say what is true, /metrics counts each kind of failure, and a reload recovers."""

from __future__ import annotations

import re
import shutil
import threading
import time

import httpx
import numpy as np
import pytest

from crossdeploy.repository import ModelRepository
from crossdeploy.serving.registry import Cost

from .live import LiveGateway

pytestmark = pytest.mark.slow
VARIANTS = ("torch-onnx", "torch-torchscript", "keras-tflite", "keras-savedmodel", "torch-executorch")
DEADLINE = 1.0  # seconds: short, and still far above a batch-1 call of any of these variants
TOKEN = "test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
IMAGE = np.random.default_rng(7).uniform(0, 16, size=(2, 8, 8)).round(3)
V2_BODY = {"inputs": [{"name": "image", "datatype": "FP32", "shape": [2, 8, 8], "data": IMAGE.ravel().tolist()}]}


class Faulty:
    """The served adapter with one fault switched on; every other attribute is the real adapter's."""

    def __init__(self, runtime, fault: str | None = None, seconds: float = 0.0, leak_bytes: int = 0):
        self.real, self.fault, self.seconds, self.leak_bytes = runtime, fault, seconds, leak_bytes
        self.release = threading.Event()
        self.calls = 0
        self.threads: list[str] = []
        self.hoard: list[np.ndarray] = []

    def __getattr__(self, name):
        return getattr(self.real, name)

    def predict_validated(self, arrays):
        self.calls += 1
        self.threads.append(threading.current_thread().name)
        if self.fault == "raise":
            raise RuntimeError("illegal memory access in kernel 'conv2d'\n  frame 3: the allocator's own words")
        if self.fault == "hang":
            self.release.wait(60)
        if self.fault == "slow" and self.calls == 1:
            time.sleep(self.seconds)
        if self.fault == "leak":
            self.hoard.append(np.ones(self.leak_bytes, np.uint8))  # written, so resident
        return self.real.predict_validated(arrays)


@pytest.fixture(scope="module")
def live(repository, tmp_path_factory):
    root = tmp_path_factory.mktemp("faults") / "model_repository"
    for name in VARIANTS:
        shutil.copytree(repository.root / name, root / name)
    gateway = LiveGateway(ModelRepository(root), inference_timeout_s=DEADLINE, probe_interval_s=0.0,
                          max_body_bytes=64 * 1024, model_control_mode="explicit", management_token=TOKEN)
    with gateway:
        limits = gateway.app.state.gateway.limits  # the gateway's own limits are the test's settings
        limits.deadline_s, limits.probe_interval_s = DEADLINE, 0.0
        with httpx.Client(base_url=gateway.url, timeout=60) as http:
            gateway.http = http
            gateway.expected = {name: logits(http, name) for name in VARIANTS}  # before any fault
            yield gateway


def logits(http: httpx.Client, name: str) -> np.ndarray:
    answer = http.post(f"/v2/models/{name}/infer", json=V2_BODY)
    assert answer.status_code == 200, answer.text
    return np.asarray(answer.json()["outputs"][0]["data"]).reshape(2, 10)


def inject(live, name: str, *args, **kwargs) -> Faulty:
    entry = live.app.state.gateway.registry.get(name)
    entry.runtime = Faulty(entry.runtime, *args, **kwargs)
    return entry.runtime


def others_answer(live, faulty: str) -> None:
    """Every other variant answers in V2, TF Serving and TorchServe, with the outputs it gave before the fault."""
    http = live.http
    for name in (n for n in VARIANTS if n != faulty):
        np.testing.assert_allclose(logits(http, name), live.expected[name], rtol=1e-5, atol=1e-5)
        tf = http.post(f"/v1/models/{name}:predict", json={"instances": IMAGE.tolist()})
        assert tf.status_code == 200, tf.text
        np.testing.assert_allclose(tf.json()["predictions"], live.expected[name], rtol=1e-5, atol=1e-5)
        assert http.post(f"/predictions/{name}", json={"data": IMAGE[0].tolist()}).status_code == 200


def failures(http: httpx.Client, name: str, kind: str, protocol: str = "v2") -> float:
    pattern = (rf'^crossdeploy_failures_total\{{kind="{kind}",model="{re.escape(name)}",protocol="{protocol}",'
               rf'version="[^"]*"\}} (\S+)$')
    return sum(float(m.group(1)) for m in re.finditer(pattern, http.get("/metrics").text, re.M))


def reload(live, name: str) -> httpx.Response:
    return live.http.post(f"/v2/repository/models/{name}/load", headers=AUTH)


def test_a_raising_runtime_is_a_500_in_each_protocols_format_and_only_its_variant_fails(live):
    http, name = live.http, "torch-onnx"
    inject(live, name, "raise")
    v2 = http.post(f"/v2/models/{name}/infer", json=V2_BODY)
    assert v2.status_code == 500 and v2.json() == {"error": f"model '{name}' failed: illegal memory access in kernel 'conv2d'"}
    tf = http.post(f"/v1/models/{name}:predict", json={"instances": IMAGE.tolist()})
    assert tf.status_code == 500 and "illegal memory access" in tf.json()["error"]
    ts = http.post(f"/predictions/{name}", json={"data": IMAGE[0].tolist()})
    assert ts.status_code == 500 and ts.json()["type"] == "InternalServerException" and "conv2d" in ts.json()["message"]
    rows = {r["name"]: r for r in http.post("/v1/compare", json={"image": IMAGE[0].tolist()}).json()["variants"]}
    assert rows[name]["status"] == "error" and "illegal memory access" in rows[name]["error"]
    assert all(rows[n]["status"] == "ok" for n in VARIANTS if n != name)
    wrong = http.post(f"/v2/models/{name}/infer", json={"inputs": [{**V2_BODY["inputs"][0], "shape": [2, 8, 7]}]})
    assert wrong.status_code == 400  # the caller's error is still the caller's
    others_answer(live, name)

    ready = http.get(f"/v2/models/{name}/ready")
    assert ready.status_code == 503 and "health probe's inference failed" in ready.json()["error"]
    assert http.get("/v2/health/ready").json()["ready"] is False
    assert http.get(f"/v1/models/{name}").json()["model_version_status"][0]["state"] == "END"
    assert http.get("/ping").json() == {"status": "Partial Healthy"}
    assert http.get(f"/models/{name}").json()[0]["workers"][0]["status"] == "UNHEALTHY"
    assert all(http.get(f"/v2/models/{n}/ready").status_code == 200 for n in VARIANTS if n != name)
    assert failures(http, name, "runtime_error") >= 1 and failures(http, name, "runtime_error", "torchserve") >= 1
    assert failures(http, name, "invalid_input") >= 1

    assert reload(live, name).status_code == 200
    np.testing.assert_allclose(logits(http, name), live.expected[name], rtol=1e-5, atol=1e-5)
    assert http.get(f"/v2/models/{name}/ready").status_code == 200 and http.get("/v2/health/ready").status_code == 200


def _hang(live, name: str) -> tuple[Faulty, threading.Thread, list]:
    """A request whose call hangs on the variant's executor (a version with no record runs there)."""
    hung = inject(live, name, "hang")
    live.app.state.gateway.registry.get(name).cost = Cost()
    answers: list[httpx.Response] = []

    def request():
        with httpx.Client(base_url=live.url, timeout=60) as client:
            answers.append(client.post(f"/v2/models/{name}/infer", json=V2_BODY))
    caller = threading.Thread(target=request)
    caller.start()
    caller.join(30)
    return hung, caller, answers


def test_a_hanging_call_is_a_504_its_variant_refuses_at_once_and_a_reload_replaces_it(live):
    http, name = live.http, "torch-torchscript"
    hung, caller, answers = _hang(live, name)
    try:
        assert not caller.is_alive() and answers[0].status_code == 504
        assert answers[0].json() == {"error": f"model '{name}' did not answer within {DEADLINE:g} s"}
        others_answer(live, name)  # while the call still hangs
        refused = http.post(f"/predictions/{name}", json={"data": IMAGE[0].tolist()})
        assert refused.status_code == 503 and refused.json()["type"] == "ServiceUnavailableException"
        assert "running past" in http.post(f"/v1/models/{name}:predict", json={"instances": IMAGE.tolist()}).json()["error"]
        ready = http.get(f"/v2/models/{name}/ready")
        assert ready.status_code == 503 and "running past" in ready.json()["error"]
        assert http.get("/v2/health/ready").status_code == 503
        assert hung.calls == 1 and not hung.release.is_set()  # nothing queued behind it, the probe included
        assert failures(http, name, "timeout") == 1 and failures(http, name, "not_ready", "torchserve") >= 1

        assert reload(live, name).status_code == 200  # a fresh entry and executor while the old call hangs
        np.testing.assert_allclose(logits(http, name), live.expected[name], rtol=1e-5, atol=1e-5)
        assert http.get(f"/v2/models/{name}/ready").status_code == 200 and not hung.release.is_set()
    finally:
        hung.release.set()


def test_a_stalled_variant_is_ready_again_when_its_call_returns(live):
    http, name = live.http, "keras-savedmodel"
    hung, caller, answers = _hang(live, name)
    try:
        assert answers[0].status_code == 504 and http.get(f"/v2/models/{name}/ready").status_code == 503
    finally:
        hung.release.set()
    deadline = time.monotonic() + 30
    while http.get(f"/v2/models/{name}/ready").status_code != 200:
        assert time.monotonic() < deadline, "still not ready after the call returned"
        time.sleep(0.05)
    np.testing.assert_allclose(logits(http, name), live.expected[name], rtol=1e-5, atol=1e-5)
    assert reload(live, name).status_code == 200


def test_a_call_that_overran_on_the_event_loop_is_a_504_and_never_runs_there_again(live):
    http, name = live.http, "keras-tflite"
    gateway = live.app.state.gateway
    budget, gateway.inline_ns = gateway.inline_ns, 10e9  # any variant with a record of its cost runs inline
    try:
        logits(http, name)  # gives it that record
        slow = inject(live, name, "slow", seconds=DEADLINE + 0.3)
        late = http.post(f"/v2/models/{name}/infer", json=V2_BODY)
        assert late.status_code == 504
        np.testing.assert_allclose(logits(http, name), live.expected[name], rtol=1e-5, atol=1e-5)
        inline_thread, next_thread = slow.threads
        assert not inline_thread.startswith(name) and next_thread.startswith(f"{name}-v")  # loop, then executor
    finally:
        gateway.inline_ns = budget
        assert reload(live, name).status_code == 200


def test_health_probes_run_the_model_at_most_once_per_interval_however_many_ask(live):
    http, name = live.http, "torch-onnx"
    assert reload(live, name).status_code == 200  # a fresh entry: never probed
    counted = inject(live, name)
    limits = live.app.state.gateway.limits
    limits.probe_interval_s = 60.0
    try:
        assert http.get(f"/v2/models/{name}/ready").status_code == 200
        probes = counted.calls
        assert probes == 1
        askers = [threading.Thread(target=lambda: httpx.get(f"{live.url}/v2/models/{name}/ready", timeout=60))
                  for _ in range(8)]
        for asker in askers:
            asker.start()
        for asker in askers:
            asker.join(60)
        for path in ("/v2/health/ready", "/ping", f"/v1/models/{name}", f"/models/{name}"):
            assert http.get(path).status_code == 200
        assert counted.calls == probes
        limits.probe_interval_s = 0.0
        assert http.get(f"/v2/models/{name}/ready").status_code == 200 and counted.calls == probes + 1
    finally:
        limits.probe_interval_s = 0.0
        assert reload(live, name).status_code == 200


def test_an_artifact_changed_or_gone_on_disk_is_said_and_a_failed_reload_keeps_the_loaded_copy(live):
    http, name = live.http, "torch-onnx"
    entry = live.app.state.gateway.registry.get(name)
    artifact = entry.runtime.directory / entry.runtime.version.files[0].path
    original = artifact.read_bytes()
    try:
        artifact.write_bytes(original + b"\0")
        ready = http.get(f"/v2/models/{name}/ready")
        assert ready.status_code == 200 and "changed on disk" in ready.json()["reason"]
        np.testing.assert_allclose(logits(http, name), live.expected[name], rtol=1e-5, atol=1e-5)
        status = http.get(f"/v1/models/{name}").json()["model_version_status"][0]
        assert status["state"] == "AVAILABLE" and "a reload would fail" in status["status"]["error_message"]

        failed = reload(live, name)
        assert failed.status_code == 400 and "keeps serving" in failed.json()["error"]
        assert live.app.state.gateway.registry.get(name) is entry
        np.testing.assert_allclose(logits(http, name), live.expected[name], rtol=1e-5, atol=1e-5)
        index = {row["name"]: row for row in http.post("/v2/repository/index").json()}
        assert index[name]["state"] == "READY" and "a reload failed" in index[name]["reason"]
        others_answer(live, name)

        artifact.unlink()
        assert "gone from disk" in http.get(f"/v2/models/{name}/ready").json()["reason"]
        np.testing.assert_allclose(logits(http, name), live.expected[name], rtol=1e-5, atol=1e-5)
    finally:
        artifact.write_bytes(original)
    assert reload(live, name).status_code == 200
    ready = http.get(f"/v2/models/{name}/ready").json()
    assert ready["ready"] is True and "reason" not in ready


@pytest.mark.parametrize("name", ["keras-tflite", "torch-executorch"])
def test_an_artifact_rewritten_in_place_does_not_change_what_is_served(live, name):
    """LiteRT and ExecuTorch read a model file from its mapping while it runs: they must run from their own copy."""
    http = live.http
    entry = live.app.state.gateway.registry.get(name)
    artifact = entry.runtime.artifact
    original = artifact.read_bytes()
    try:
        with open(artifact, "r+b") as file:  # same size, same inode: what a mapping of it sees
            file.write(bytes(len(original)))
        np.testing.assert_allclose(logits(http, name), live.expected[name], rtol=1e-5, atol=1e-5)
        ready = http.get(f"/v2/models/{name}/ready")
        assert ready.status_code == 200 and "changed on disk" in ready.json()["reason"]
    finally:
        artifact.write_bytes(original)
    assert reload(live, name).status_code == 200


def test_a_leaking_runtime_shows_in_its_probe_growth_and_the_others_keep_serving(live):
    http, name = live.http, "keras-tflite"
    leak = 48 << 20
    inject(live, name, "leak", leak_bytes=leak)
    try:
        before = _growth(http, name)
        assert http.get(f"/v2/models/{name}/ready").status_code == 200  # a leak alone does not fail a probe
        assert _growth(http, name) - before >= leak * 0.9
        assert logits(http, name).shape == (2, 10)
        others_answer(live, name)
        assert "process_resident_memory_bytes" in http.get("/metrics").text
    finally:
        assert reload(live, name).status_code == 200


def _growth(http: httpx.Client, name: str) -> float:
    found = re.search(rf'^crossdeploy_probe_rss_growth_bytes_total\{{model="{name}",version="[^"]*"\}} (\S+)$',
                      http.get("/metrics").text, re.M)
    return float(found.group(1))


def test_refusals_before_inference_are_counted_by_kind(live):
    http = live.http
    assert http.post("/v2/models/torch-onnx/infer", content=b"x" * (65 * 1024)).status_code == 413
    assert http.post("/v2/models/torch-onnx/infer", content=b"{}", headers={"Content-Type": "text/csv"}).status_code == 415
    assert http.post("/v2/models/no-such-model/infer", json=V2_BODY).status_code == 404
    assert failures(http, "torch-onnx", "payload_too_large") >= 1
    assert failures(http, "torch-onnx", "unsupported_media_type") >= 1
    assert failures(http, "unknown", "not_found") >= 1 and "no-such-model" not in http.get("/metrics").text

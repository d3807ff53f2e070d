"""What one bad variant or too much load must not do: stop the others from serving."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest

from crossdeploy.repository import ModelRepository

from .live import LiveGateway

TESTDATA = Path(__file__).parent / "testdata"
GOOD = (TESTDATA / "v2_infer.json").read_bytes()
pytestmark = pytest.mark.slow
KEPT = ("torch-onnx", "keras-tflite", "torch-torchscript")
TOKEN = "test-token"
MANAGED = {"model_control_mode": "explicit", "management_token": TOKEN}  # load/unload need both
MANAGE = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def small_repository(repository, tmp_path) -> ModelRepository:
    root = tmp_path / "model_repository"
    for name in KEPT:
        shutil.copytree(repository.root / name, root / name)
    return ModelRepository(root)


def test_a_changed_artifact_is_refused_at_load_and_the_rest_serve(small_repository):
    config = small_repository.config("torch-onnx")
    artifact = small_repository.version_dir("torch-onnx", config.latest().version) / config.latest().files[0].path
    artifact.write_bytes(artifact.read_bytes() + b"\0")  # one byte appended after export
    with LiveGateway(small_repository, **MANAGED) as live, httpx.Client(base_url=live.url, timeout=60) as http:
        ready = http.get("/v2/models/torch-onnx/ready")
        assert ready.status_code == 503 and "sha256 mismatch" in ready.json()["error"]
        refused = http.post("/v2/models/torch-onnx/infer", content=GOOD)
        assert refused.status_code == 503 and "not ready" in refused.json()["error"]
        index = {row["name"]: row for row in http.post("/v2/repository/index").json()}
        assert index["torch-onnx"]["state"] == "UNAVAILABLE" and "sha256" in index["torch-onnx"]["reason"]
        assert http.get("/v1/models/torch-onnx").json()["model_version_status"][0]["state"] == "END"
        for name in KEPT[1:]:
            assert http.post(f"/v2/models/{name}/infer", content=GOOD).status_code == 200
        assert http.get("/v2/health/ready").json() == {"ready": True, "models_ready": 2, "models_unavailable": 1}
        compare = http.post("/v1/compare", json={"image": [[0] * 8] * 8}).json()
        assert {r["name"]: r["status"] for r in compare["variants"]} == {"keras-tflite": "ok", "torch-onnx": "error", "torch-torchscript": "ok"}
        # repaired on disk, reloaded through the repository API without a restart
        artifact.write_bytes(artifact.read_bytes()[:-1])
        assert http.post("/v2/repository/models/torch-onnx/load", headers=MANAGE).status_code == 200
        assert http.post("/v2/models/torch-onnx/infer", content=GOOD).status_code == 200


def _slow_request(port: int, hold: threading.Event) -> None:
    """A POST whose body arrives only when `hold` is set: it occupies an in-flight slot until then."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(f"POST /v2/models/keras-tflite/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {len(GOOD)}\r\n\r\n".encode() + GOOD[:10])
        hold.wait(60)
        sock.sendall(GOOD[10:])
        sock.recv(65536)


def test_beyond_the_in_flight_bound_requests_get_503_with_retry_after(small_repository):
    with LiveGateway(small_repository, max_in_flight=2) as live, httpx.Client(base_url=live.url, timeout=60) as http:
        hold = threading.Event()
        holders = [threading.Thread(target=_slow_request, args=(live.port, hold)) for _ in range(2)]
        for thread in holders:
            thread.start()
        deadline = time.monotonic() + 30
        while "crossdeploy_requests_in_flight 2.0" not in http.get("/metrics").text:
            assert time.monotonic() < deadline, "the two slow requests never got in flight"
            time.sleep(0.05)
        busy = http.post("/v2/models/torch-onnx/infer", content=GOOD)
        assert busy.status_code == 503 and busy.headers["Retry-After"] == "1" and "busy" in busy.json()["error"]
        ts = http.post("/predictions/torch-onnx", json={"data": [[0] * 8] * 8})
        assert ts.status_code == 503 and ts.json()["type"] == "ServiceUnavailableException"
        hold.set()
        for thread in holders:
            thread.join(60)
        assert http.post("/v2/models/torch-onnx/infer", content=GOOD).status_code == 200
        assert 'crossdeploy_requests_rejected_total{reason="overloaded"} 2.0' in http.get("/metrics").text


def test_a_variant_with_an_unknown_format_is_unavailable_and_the_rest_serve(small_repository):
    path = small_repository.root / "keras-tflite" / "config.json"
    path.write_text(path.read_text().replace('"format": "tflite"', '"format": "tflite-v9"'))
    with LiveGateway(small_repository) as live, httpx.Client(base_url=live.url, timeout=60) as http:
        ready = http.get("/v2/models/keras-tflite/ready")
        assert ready.status_code == 503 and "no runtime adapter for format 'tflite-v9'" in ready.json()["error"]
        assert http.post("/v2/models/torch-onnx/infer", content=GOOD).status_code == 200


def test_reloading_a_model_under_load_never_drops_a_request(small_repository):
    with LiveGateway(small_repository, **MANAGED) as live, httpx.Client(base_url=live.url, timeout=60) as http:
        statuses: list[int] = []
        stop = threading.Event()

        def hammer():
            with httpx.Client(base_url=live.url, timeout=60) as client:
                while not stop.is_set():
                    statuses.append(client.post("/v2/models/torch-onnx/infer", content=GOOD).status_code)

        def served_at_least(count: int) -> None:
            deadline = time.monotonic() + 60
            while len(statuses) < count:
                assert time.monotonic() < deadline, f"only {len(statuses)} requests answered"
                time.sleep(0.01)

        workers = [threading.Thread(target=hammer) for _ in range(3)]
        for worker in workers:
            worker.start()
        served_at_least(20)  # requests are flowing before the first reload
        for _ in range(3):
            assert http.post("/v2/repository/models/torch-onnx/load", headers=MANAGE).status_code == 200
        served_at_least(len(statuses) + 20)  # and after the last
        stop.set()
        for worker in workers:
            worker.join(60)
        assert statuses and set(statuses) == {200}, {s: statuses.count(s) for s in set(statuses)}


def test_retry_after_is_the_configured_wait(small_repository):
    with LiveGateway(small_repository, max_in_flight=1, retry_after_s=7) as live, \
            httpx.Client(base_url=live.url, timeout=60) as http:
        hold = threading.Event()
        holder = threading.Thread(target=_slow_request, args=(live.port, hold))
        holder.start()
        deadline = time.monotonic() + 30
        while "crossdeploy_requests_in_flight 1.0" not in http.get("/metrics").text:
            assert time.monotonic() < deadline, "the slow request never got in flight"
            time.sleep(0.05)
        for path, body in (("/v2/models/torch-onnx/infer", GOOD), ("/predictions/torch-onnx", b'{"data": 1}')):
            busy = http.post(path, content=body, headers={"Content-Type": "application/json"})
            assert busy.status_code == 503 and busy.headers["Retry-After"] == "7", (path, busy.headers)
            assert "retry after 7 s" in busy.text
        hold.set()
        holder.join(60)
        assert http.post("/v2/models/torch-onnx/infer", content=GOOD).status_code == 200

"""Admission in the HTTP protocol (serving/admission.py), on a real gateway: a request beyond the in-flight bound
waits for a slot and is served when one frees; one that waits in vain, or finds the queue full, is refused with
503 + Retry-After in its protocol's error body on a connection that stays usable; health and metrics are never
counted. The slot is held by a request whose body is still on its way (it is in flight while the app reads it),
so nothing depends on a model's speed."""

from __future__ import annotations

import shutil
import socket
import threading

import httpx
import pytest

from crossdeploy.repository import ModelRepository

from .live import LiveGateway

V2 = "/v2/models/torch-onnx/infer"
BODY = b'{"inputs": [{"name": "image", "datatype": "FP32", "shape": [1, 8, 8], "data": [' + b", ".join([b"0"] * 64) + b"]}]}"
JSON = {"Content-Type": "application/json"}


@pytest.fixture
def small_repository(repository, tmp_path) -> ModelRepository:
    root = tmp_path / "model_repository"
    shutil.copytree(repository.root / "torch-onnx", root / "torch-onnx")
    return ModelRepository(root)


def hold_a_slot(live: LiveGateway) -> socket.socket:
    """A request admitted and in flight until the rest of its body is sent (see `finish`)."""
    sock = socket.create_connection(("127.0.0.1", live.port), timeout=60)
    sock.sendall(b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                 % (V2.encode(), len(BODY), BODY[:10]))
    return sock


def finish(sock: socket.socket) -> bytes:
    sock.sendall(BODY[10:])
    return sock.recv(65536)


def wait_until_in_flight(http: httpx.Client, count: int) -> None:
    for _ in range(600):
        if f"crossdeploy_requests_in_flight {count:.1f}" in http.get("/metrics").text:
            return
        threading.Event().wait(0.05)
    raise AssertionError(f"never {count} in flight")


def test_a_request_beyond_the_bound_waits_for_the_slot_and_is_served(small_repository):
    with LiveGateway(small_repository, max_in_flight=1, admission_wait_ms=30_000) as live, \
            httpx.Client(base_url=live.url, timeout=60) as http:
        holder = hold_a_slot(live)
        wait_until_in_flight(http, 1)
        result = {}
        waiting = threading.Thread(target=lambda: result.update(r=http.post(V2, content=BODY, headers=JSON)))
        waiting.start()
        for _ in range(600):
            if "crossdeploy_requests_waiting 1.0" in http.get("/metrics").text:
                break
            threading.Event().wait(0.05)
        else:
            raise AssertionError("the second request never waited")
        assert http.get("/v2/health/live").status_code == 200  # GETs are not counted: answered meanwhile
        assert b" 200 OK" in finish(holder)
        waiting.join(60)
        assert result["r"].status_code == 200, result["r"].text  # handed the slot, not refused
        assert "crossdeploy_requests_waiting 0.0" in http.get("/metrics").text


@pytest.mark.parametrize("path, body_key", [(V2, "error"), ("/predictions/torch-onnx", "message")])
def test_waiting_in_vain_ends_in_503_with_retry_after_and_the_connection_stays_usable(small_repository, path, body_key):
    with LiveGateway(small_repository, max_in_flight=1, admission_wait_ms=50, retry_after_s=3) as live, \
            httpx.Client(base_url=live.url, timeout=60) as http:
        holder = hold_a_slot(live)
        wait_until_in_flight(http, 1)
        with httpx.Client(base_url=live.url, timeout=60) as same:  # one keep-alive connection for both
            body = BODY if path == V2 else b"\x00" * 256
            for _ in range(2):
                refused = same.post(path, content=body, headers=JSON if path == V2 else {})
                assert refused.status_code == 503, refused.text
                assert refused.headers["Retry-After"] == "3" and "busy" in refused.json()[body_key]
                assert refused.headers["content-type"] == "application/json" and "date" in refused.headers
        assert b" 200 OK" in finish(holder)
        assert http.post(V2, content=BODY, headers=JSON).status_code == 200
        metrics = http.get("/metrics").text
        assert 'crossdeploy_requests_rejected_total{reason="overloaded"} 2.0' in metrics
        assert "crossdeploy_requests_in_flight 0.0" in metrics


def test_a_full_queue_refuses_at_once(small_repository):
    with LiveGateway(small_repository, max_in_flight=1, admission_wait_ms=60_000, max_waiting=0) as live, \
            httpx.Client(base_url=live.url, timeout=10) as http:  # a wait would outlast the client's timeout
        holder = hold_a_slot(live)
        wait_until_in_flight(http, 1)
        assert http.post(V2, content=BODY, headers=JSON).status_code == 503
        assert b" 200 OK" in finish(holder)

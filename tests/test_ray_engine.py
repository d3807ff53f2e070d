"""The Ray engine past the happy path: a model replica SIGKILLed under steady load loses only what it had in
flight (in the protocol's error format), is replaced, and the server stays ready meanwhile; a family set to
autoscale grows from 1 replica to 2 under load. And the Serve config written for `serve deploy` is one Ray
itself accepts, which builds the same application."""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import psutil
import pytest
import yaml

from crossdeploy.repository import ModelRepository

from .live import LiveGateway, RayGateway

pytestmark = pytest.mark.slow
ONE_PER_FAMILY = ("torch-torchscript", "keras-savedmodel", "torch-onnx", "torch-executorch")
BODY = {"inputs": [{"name": "image", "shape": [1, 8, 8], "datatype": "FP32", "data": np.zeros(64).tolist()}]}
CLIENTS = 4
TOKEN = "ray-test-token"


@pytest.fixture(scope="module")
def families_repository(repository, tmp_path_factory) -> ModelRepository:
    root = tmp_path_factory.mktemp("ray") / "model_repository"
    for name in ONE_PER_FAMILY:
        shutil.copytree(repository.root / name, root / name)
    return ModelRepository(root)


@pytest.fixture(scope="module")
def gateway(families_repository, ray_cluster):
    # onnx autoscales 1..2 at one request in progress per replica (4 clients keep about 4 in progress);
    # executorch runs 2 replicas, one of which a test freezes and kills; torch and TF run 2 threads on 0.25 CPU;
    # torch's one replica takes one call at a time and one more may queue for it.
    scale = {"onnx": {"replicas": 1, "max_replicas": 2, "target_ongoing_requests": 1.0}, "executorch": {"replicas": 2},
             "torch": {"threads": 2, "max_ongoing_requests": 1, "max_queued_requests": 1}, "tensorflow": {"threads": 2}}
    with RayGateway(families_repository, ray_cluster, ray={"families": scale, "health_check_period_s": 2.0},
                    model_control_mode="explicit", management_token=TOKEN) as live:
        yield live


class Load:
    """CLIENTS threads sending torch-onnx requests back to back, each answer recorded with its time."""

    def __init__(self, url: str):
        self.url, self.stop, self.answers = url, threading.Event(), []
        self.threads = [threading.Thread(target=self._client, daemon=True) for _ in range(CLIENTS)]

    def _client(self):
        with httpx.Client(base_url=self.url, timeout=30) as http:
            while not self.stop.is_set():
                sent = time.monotonic()
                try:
                    response = http.post("/v2/models/torch-onnx/infer", json=BODY)
                    self.answers.append((sent, time.monotonic(), response.status_code, response.text))
                except httpx.HTTPError as exc:
                    self.answers.append((sent, time.monotonic(), 0, repr(exc)))

    def __enter__(self):
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=60)


def family_replicas(family: str) -> list[psutil.Process]:
    """The processes of a family's replicas (Ray titles each with its deployment's name)."""
    return [p for p in psutil.process_iter(["cmdline"]) if any(f"models-{family}" in part for part in p.info["cmdline"] or ())]


def onnx_replicas() -> list[psutil.Process]:
    return family_replicas("onnx")


def wait_for(condition, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {seconds:g} s waiting for {what}"
        time.sleep(0.25)


def test_both_engines_give_the_same_answers(gateway, families_repository):
    """Every variant, through V2 binary and /v1/compare, answers the same bytes on Ray as in one process: the
    replicas run the same adapters with the same threads; only the process boundary differs."""
    import tritonclient.http as triton

    from crossdeploy.models.data import load_split

    x = load_split(seed=0).x_test[:16].astype(np.float32)

    def answers(live):
        client = triton.InferenceServerClient(live.address, network_timeout=60)
        found = {}
        for name in ONE_PER_FAMILY:
            tensor = triton.InferInput("image", list(x.shape), "FP32")
            tensor.set_data_from_numpy(x, binary_data=True)
            found[name] = client.infer(name, [tensor], outputs=[triton.InferRequestedOutput("logits", binary_data=True)]).as_numpy("logits")
        with httpx.Client(base_url=live.url, timeout=60) as http:
            compared = http.post("/v1/compare", json={"image": x.tolist()}).json()
        timed = {"inference_ms", "queue_ms"}  # the only fields that may differ: wall times
        rows = {r["name"]: {k: v for k, v in r.items() if k not in timed} for r in compared["variants"]}
        return found, rows, compared["agreement"]

    on_ray = answers(gateway)
    with LiveGateway(families_repository) as inprocess:
        in_process = answers(inprocess)
    for name in ONE_PER_FAMILY:
        assert np.array_equal(on_ray[0][name], in_process[0][name]), name
    for name, row in on_ray[1].items():
        differing = {k: (v, in_process[1][name].get(k)) for k, v in row.items() if in_process[1][name].get(k) != v}
        assert not differing, (name, differing)
    assert on_ray[2] == in_process[2]


def test_each_replica_runs_the_threads_its_family_asks_for(gateway):
    """Ray sets OMP_NUM_THREADS to 1 for a fractional CPU; the family's `threads` is what the runtimes use."""
    from ray import serve

    from crossdeploy.serving.ray_engine.application import APP_NAME

    torch = serve.get_deployment_handle("models-torch", APP_NAME).threads.remote().result(timeout_s=60)
    tf = serve.get_deployment_handle("models-tensorflow", APP_NAME).threads.remote().result(timeout_s=60)
    assert torch["torch"] == 2 and torch["OMP_NUM_THREADS"] == "2"
    assert tf["tensorflow"] == 2


def test_a_full_family_queue_answers_503_with_retry_after_in_the_protocols_format(gateway):
    """Past a family's max_ongoing_requests and max_queued_requests, Ray refuses the call; the client gets the
    in-process gateway's answer to a full queue: 503, Retry-After, the protocol's error body. Others are served."""
    x = np.random.default_rng(3).uniform(0, 16, size=(1024, 8, 8)).astype(np.float32)
    body = {"inputs": [{"name": "image", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}]}
    answers = []

    def call():
        with httpx.Client(base_url=gateway.url, timeout=60) as http:
            answers.append(http.post("/v2/models/torch-torchscript/infer", json=body))

    threads = [threading.Thread(target=call) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    refused = [a for a in answers if a.status_code == 503]
    assert len(answers) == 12 and refused and any(a.status_code == 200 for a in answers), [a.status_code for a in answers]
    assert {a.status_code for a in answers} <= {200, 503}
    for answer in refused:
        assert answer.headers["Retry-After"] == "1" and "busy" in answer.json()["error"], answer.text
    with httpx.Client(base_url=gateway.url, timeout=60) as http:
        assert http.post("/v2/models/torch-torchscript/infer", json=BODY).status_code == 200
        assert http.get("/v2/health/ready").status_code == 200


def test_a_family_autoscales_from_one_replica_to_two_under_load(gateway):
    assert len(onnx_replicas()) == 1
    with Load(gateway.url) as load:
        wait_for(lambda: len(onnx_replicas()) == 2, 120, "a second torch-onnx replica")
        wait_for(lambda: len(load.answers) > 50, 60, "answers")
    assert {status for *_, status, _ in load.answers} == {200}


def test_a_killed_replica_loses_only_what_it_had_in_flight(gateway):
    ready, stop_polling = [], threading.Event()

    def poll_ready():
        with httpx.Client(base_url=gateway.url, timeout=30) as http:
            while not stop_polling.is_set():
                ready.append(http.get("/v2/health/ready").status_code)
                time.sleep(0.2)

    poller = threading.Thread(target=poll_ready, daemon=True)
    with Load(gateway.url) as load:
        wait_for(lambda: len(onnx_replicas()) == 2, 120, "two torch-onnx replicas")
        time.sleep(2)
        poller.start()
        victim = onnx_replicas()[0]
        killed_at = time.monotonic()
        os.kill(victim.pid, signal.SIGKILL)
        wait_for(lambda: len(onnx_replicas()) == 2 and victim.pid not in {p.pid for p in onnx_replicas()}, 120,
                 "the killed replica to be replaced")
        replaced_at = time.monotonic()
        time.sleep(3)
    stop_polling.set()
    poller.join(timeout=30)
    failed = [a for a in load.answers if a[2] != 200]
    # What failed was sent before the kill (in flight on the victim) or while Ray learned of it, answered in
    # the V2 error format as a retryable 503; at most what the clients had in flight.
    assert len(failed) <= CLIENTS, failed
    for sent, answered, status, text in failed:
        assert status == 503 and '"error"' in text and "replica" in text, text
        assert sent < killed_at + 1.0, (sent - killed_at, text)
    after = [a for a in load.answers if a[0] > killed_at + 1.0]
    assert after and all(a[2] == 200 for a in after)
    assert ready and set(ready) == {200}, ready  # the other replica and every other family lived throughout
    print(f"\nkill: {len(failed)} of {len(load.answers)} requests failed; replaced in {replaced_at - killed_at:.1f} s")


def test_calls_held_by_a_killed_replica_are_answered_within_the_deadline(gateway):
    """One executorch replica of two is frozen (SIGSTOP) so that calls pile up on it, then killed. Ray Serve
    sends what the dead replica held to a live one, so each call is answered, in its own protocol: 200, or a
    503/504 in the protocol's error format when no live replica could take it in time. Nothing hangs."""
    wait_for(lambda: len(family_replicas("executorch")) == 2, 120, "two executorch replicas")
    victim = family_replicas("executorch")[0]
    image = np.zeros((8, 8)).tolist()
    calls = {"v2": ("/v2/models/torch-executorch/infer", BODY), "tfserving": ("/v1/models/torch-executorch:predict", {"instances": [image]}),
             "torchserve": ("/predictions/torch-executorch", {"data": image})}
    answers = []

    def call(protocol):
        path, body = calls[protocol]
        with httpx.Client(base_url=gateway.url, timeout=60) as http:
            answers.append((protocol, http.post(path, json=body)))

    os.kill(victim.pid, signal.SIGSTOP)
    threads = [threading.Thread(target=call, args=(p,)) for p in calls for _ in range(4)]
    try:
        for thread in threads:
            thread.start()
        time.sleep(2)  # the calls routed to the frozen replica wait there; the others are answered
        held = len(threads) - len(answers)
    finally:
        os.kill(victim.pid, signal.SIGKILL)
    for thread in threads:
        thread.join(timeout=60)
    assert held > 0 and len(answers) == len(threads)
    for protocol, answer in answers:
        assert answer.status_code in (200, 503, 504), answer.text
        if answer.status_code != 200:
            error = answer.json()
            message = error["message"] if protocol == "torchserve" else error["error"]
            assert "torch-executorch" in message, error
    lost = [a.status_code for _, a in answers if a.status_code != 200]
    print(f"\nkilled with {held} calls held: {len(lost)} lost ({lost})")
    with httpx.Client(base_url=gateway.url, timeout=60) as http:
        assert http.post(calls["v2"][0], json=BODY).status_code == 200
        assert http.get("/v2/health/ready").status_code == 200


def test_load_and_unload_reach_the_family_replicas(gateway, families_repository):
    """Model control on the Ray engine: the token rules hold; an unloaded variant is gone; a load after the
    version folder changed serves the new version from the family's replicas (both executorch replicas)."""
    auth = {"Authorization": f"Bearer {TOKEN}"}
    path = "/v2/models/torch-executorch/infer"
    with httpx.Client(base_url=gateway.url, timeout=120) as http:
        assert http.post("/v2/repository/models/torch-executorch/unload").status_code == 401
        assert http.post("/v2/repository/models/torch-executorch/unload", headers=auth).status_code == 200
        assert http.post(path, json=BODY).status_code == 404
        variant = families_repository.root / "torch-executorch"
        shutil.copytree(variant / "1", variant / "2")
        config = variant / "config.json"
        saved = config.read_text()
        document = yaml.safe_load(saved)  # JSON is YAML
        document["versions"].append({**document["versions"][0], "version": 2})
        config.write_text(__import__("json").dumps(document))
        try:
            assert http.post("/v2/repository/models/torch-executorch/load", headers=auth).status_code == 200
            versions = set()
            for _ in range(12):  # calls spread over both replicas: each answers from the reloaded variant
                answer = http.post(path, json=BODY)
                assert answer.status_code == 200, answer.text
                versions.add(answer.json()["model_version"])
            assert versions == {"2"}
            assert http.post("/v2/models/torch-executorch/versions/1/infer", json=BODY).status_code == 200
        finally:
            config.write_text(saved)
            shutil.rmtree(variant / "2")
            http.post("/v2/repository/models/torch-executorch/load", headers=auth)


def test_the_serve_config_is_one_ray_accepts_and_builds(families_repository, tmp_path):
    from ray.serve.schema import ServeDeploySchema

    from crossdeploy.cli import main
    from crossdeploy.serving.ray_engine.application import app_builder

    assert main(["deploy", "ray", "--repository", str(families_repository.root), "--out", str(tmp_path)]) == 0
    document = yaml.safe_load((tmp_path / "ray" / "serve_config.yaml").read_text())
    schema = ServeDeploySchema.model_validate(document)
    application = schema.applications[0]
    assert application.import_path.endswith(":app_builder") and application.route_prefix == "/"
    assert {d.name for d in application.deployments} == {"gateway", "models-torch", "models-tensorflow", "models-onnx", "models-executorch"}
    assert Path(application.args["repository"]) == families_repository.root.resolve()
    built = app_builder(application.args)  # what `serve deploy` calls: the same ingress over the four families
    assert type(built).__name__ == "Application"
    with pytest.raises(Exception):
        ServeDeploySchema.model_validate({**document, "applications": [{**document["applications"][0], "import_path": 3}]})

"""Locked management: load/unload refused unless model control is explicit, then only with the bearer token; a
config names files only inside its version folder and model code only from there or the crossdeploy package;
a tampered artifact is refused at load; a pinned repository digest refuses another repository, or a changed
config at load."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from crossdeploy.bench.gateway_floor import free_port
from crossdeploy.repository import ModelRepository, sha256_of

from .live import LiveGateway

ROOT = Path(__file__).parent.parent
GOOD = (Path(__file__).parent / "testdata" / "v2_infer.json").read_bytes()
TOKEN = "test-token"
MANAGED = {"model_control_mode": "explicit", "management_token": TOKEN}
MANAGE = {"Authorization": f"Bearer {TOKEN}"}
pytestmark = pytest.mark.slow


@pytest.fixture
def small(repository, tmp_path) -> ModelRepository:
    root = tmp_path / "model_repository"
    shutil.copytree(repository.root / "torch-onnx", root / "torch-onnx")
    return ModelRepository(root)


def copy_variant(repository: ModelRepository, source: Path, name: str, edit=None) -> Path:
    """`source` (a variant folder) copied into `repository` as `name`, its config edited by `edit(config)`."""
    shutil.copytree(source, repository.root / name)
    path = repository.root / name / "config.json"
    config = json.loads(path.read_text())
    config["name"] = name
    if edit:
        edit(config)
    path.write_text(json.dumps(config))
    return repository.root / name


def refused(metrics: str, reason: str) -> float:
    line = next(line for line in metrics.splitlines()
                if line.startswith(f'crossdeploy_management_refused_total{{reason="{reason}"}}'))
    return float(line.split()[-1])


def test_model_control_is_off_by_default_and_nothing_is_loaded(small, repository):
    with LiveGateway(small) as live, httpx.Client(base_url=live.url, timeout=60) as http:
        copy_variant(small, repository.root / "keras-tflite", "keras-tflite")  # arrives after start
        for path in ("/v2/repository/models/keras-tflite/load", "/v2/repository/models/torch-onnx/unload"):
            answer = http.post(path, headers=MANAGE)  # a token does not help: model control is off
            assert answer.status_code == 403 and "--model-control-mode explicit" in answer.json()["error"]
        index = {row["name"]: row for row in http.post("/v2/repository/index").json()}  # readable without a token
        assert index["keras-tflite"]["state"] == "UNAVAILABLE" and index["keras-tflite"]["reason"] == "unloaded"
        assert index["torch-onnx"]["state"] == "READY"
        assert http.post("/v2/models/torch-onnx/infer", content=GOOD).status_code == 200  # the unload did not happen
        assert refused(http.get("/metrics").text, "model_control_off") == 2.0


WRONG = [{}, {"Authorization": "Bearer"}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Bearer {TOKEN}x"},
         {"Authorization": f"Basic {TOKEN}"}, {"Authorization": TOKEN}, {"Authorization": "Bearer t\xe9st-token".encode("latin-1")}]


def test_explicit_mode_wants_the_token_and_every_refusal_looks_the_same(small, repository):
    with LiveGateway(small, **MANAGED) as live, httpx.Client(base_url=live.url, timeout=60) as http:
        copy_variant(small, repository.root / "keras-tflite", "keras-tflite")
        bodies = set()
        for headers in WRONG:
            for action in ("load", "unload"):
                answer = http.post(f"/v2/repository/models/keras-tflite/{action}", headers=headers)
                assert answer.status_code == 401 and answer.headers["WWW-Authenticate"] == "Bearer", headers
                bodies.add(answer.content)
        assert len(bodies) == 1 and "bearer token" in json.loads(bodies.pop())["error"]
        unknown = http.post("/v2/repository/models/no-such-model/load")  # no token: whether it exists is not told
        assert unknown.status_code == 401
        assert http.post("/v2/repository/models/keras-tflite/load", headers=MANAGE).status_code == 200
        assert http.post("/v2/models/keras-tflite/infer", content=GOOD).status_code == 200
        assert http.post("/v2/repository/models/torch-onnx/unload", headers=MANAGE).status_code == 200
        assert http.post("/v2/models/torch-onnx/infer", content=GOOD).status_code == 404
        metrics = http.get("/metrics").text
        assert refused(metrics, "no_token") == 2 * 4 + 1  # {}, "Bearer", "Basic ...", the bare token; and no-such-model
        assert refused(metrics, "wrong_token") == 2 * 3


def test_a_generated_token_is_written_0600_and_is_the_one_that_works(small, tmp_path):
    path = tmp_path / "secrets" / "management_token"
    path.parent.mkdir()
    path.write_text("an old token\n")
    path.chmod(0o644)  # a file left readable by others is replaced, not reused
    with LiveGateway(small, model_control_mode="explicit", management_token_file=path) as live, \
            httpx.Client(base_url=live.url, timeout=60) as http:
        token = path.read_text().strip()
        assert stat.S_IMODE(path.stat().st_mode) == 0o600 and len(token) >= 32 and token != "an old token"
        assert http.post("/v2/repository/models/torch-onnx/load", headers={"Authorization": "Bearer an old token"}).status_code == 401
        assert http.post("/v2/repository/models/torch-onnx/load", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    default = tmp_path / "work" / "management_token"  # without a path: <workdir>/management_token
    with LiveGateway(small, model_control_mode="explicit", workdir=tmp_path / "work"):
        assert stat.S_IMODE(default.stat().st_mode) == 0o600 and default.read_text().strip() != token


def _outside(config, path):
    config["versions"][0]["files"][0]["path"] = path


def test_a_config_naming_a_file_outside_its_version_folder_is_refused(small, tmp_path):
    source = small.root / "torch-onnx"
    artifact = source / "1" / "model.onnx"
    copy_variant(small, source, "dotdot", lambda c: _outside(c, "../../torch-onnx/1/model.onnx"))  # same bytes
    copy_variant(small, source, "absolute", lambda c: _outside(c, str(artifact.resolve())))
    link = copy_variant(small, source, "symlink") / "1" / "model.onnx"
    shutil.copy(artifact, tmp_path / "elsewhere.onnx")
    link.unlink()
    link.symlink_to(tmp_path / "elsewhere.onnx")  # the same bytes, so only where it leads can refuse it
    with LiveGateway(small, **MANAGED) as live, httpx.Client(base_url=live.url, timeout=60) as http:
        index = {row["name"]: row for row in http.post("/v2/repository/index").json()}
        assert "leaves the version folder ('..')" in index["dotdot"]["reason"]
        assert "is absolute" in index["absolute"]["reason"]
        assert "leads out of its version folder" in index["symlink"]["reason"]
        for name in ("dotdot", "absolute", "symlink"):
            assert index[name]["state"] == "UNAVAILABLE" and len(index[name]["reason"].splitlines()) == 1
            answer = http.post(f"/v2/repository/models/{name}/load", headers=MANAGE)
            assert answer.status_code == 400 and name in answer.json()["error"]
        assert http.post("/v2/models/torch-onnx/infer", content=GOOD).status_code == 200  # the others serve


def test_model_code_comes_only_from_the_version_folder_or_crossdeploy(repository, tmp_path, monkeypatch):
    """The same factory file beside sys.path is refused (and never imported); carried in the version folder
    with its sha256 it serves; changed after it was recorded, it is refused before it runs."""
    code = tmp_path / "code"
    code.mkdir()
    shutil.copy(ROOT / "models" / "torch_cnn.py", code / "cnn_outside.py")
    monkeypatch.syspath_prepend(str(code))
    store = ModelRepository(tmp_path / "model_repository")
    store.root.mkdir()
    eager = repository.root / "torch-eager"
    copy_variant(store, eager, "outside", lambda c: c.update(entry="cnn_outside:build"))
    copy_variant(store, eager, "path", lambda c: c.update(entry=f"{code / 'cnn_outside.py'}:build"))
    for name in ("carried", "tampered"):
        folder = copy_variant(store, eager, name, lambda c: c.update(entry="cnn_carried:build"))
        shutil.copy(ROOT / "models" / "torch_cnn.py", folder / "1" / "cnn_carried.py")
        config = json.loads((folder / "config.json").read_text())
        carried = folder / "1" / "cnn_carried.py"
        config["versions"][0]["files"].append({"path": carried.name, "sha256": sha256_of(carried), "size": carried.stat().st_size})
        (folder / "config.json").write_text(json.dumps(config))
    with (store.root / "tampered" / "1" / "cnn_carried.py").open("a") as out:
        out.write("\nraise SystemExit('this code must never run')\n")
    with LiveGateway(store) as live, httpx.Client(base_url=live.url, timeout=60) as http:
        index = {row["name"]: row for row in http.post("/v2/repository/index").json()}
        assert "entry module 'cnn_outside' is neither in the crossdeploy package nor a file of version 1" in index["outside"]["reason"]
        assert "must be 'module:function'" in index["path"]["reason"]
        assert "sha256 mismatch" in index["tampered"]["reason"] and "cnn_carried.py" in index["tampered"]["reason"]
        assert index["carried"]["state"] == "READY"
        assert http.post("/v2/models/carried/infer", content=GOOD).status_code == 200
        assert {index[n]["state"] for n in ("outside", "path", "tampered")} == {"UNAVAILABLE"}
    assert "cnn_outside" not in sys.modules
    # run from its checked bytes, not imported: no __pycache__ (which a later load would prefer to the source)
    assert sorted(p.name for p in (store.root / "carried" / "1").iterdir()) == ["cnn_carried.py", "model.pt"]


def test_a_tampered_artifact_is_refused_at_load(small):
    with LiveGateway(small, **MANAGED) as live, httpx.Client(base_url=live.url, timeout=60) as http:
        assert http.post("/v2/models/torch-onnx/infer", content=GOOD).status_code == 200
        artifact = small.root / "torch-onnx" / "1" / "model.onnx"
        artifact.write_bytes(artifact.read_bytes()[:-1] + bytes([artifact.read_bytes()[-1] ^ 1]))  # one bit
        answer = http.post("/v2/repository/models/torch-onnx/load", headers=MANAGE)
        assert answer.status_code == 400 and "sha256 mismatch" in answer.json()["error"]


def test_a_pinned_gateway_refuses_a_load_whose_config_changed_and_keeps_serving(small, repository):
    digest = small.digest()
    with LiveGateway(small, expect_digest=digest, **MANAGED) as live, httpx.Client(base_url=live.url, timeout=60) as http:
        assert http.post("/v2/repository/models/torch-onnx/load", headers=MANAGE).status_code == 200  # unchanged
        path = small.root / "torch-onnx" / "config.json"
        config = json.loads(path.read_text())
        config["notes"] = ["edited after the gateway started"]
        path.write_text(json.dumps(config))
        answer = http.post("/v2/repository/models/torch-onnx/load", headers=MANAGE)
        assert answer.status_code == 400 and "pinned repository digest" in answer.json()["error"]
        assert http.post("/v2/models/torch-onnx/infer", content=GOOD).status_code == 200  # the pinned one serves
        copy_variant(small, repository.root / "keras-tflite", "keras-tflite")  # not in the pinned index
        assert http.post("/v2/repository/models/keras-tflite/load", headers=MANAGE).status_code == 400


def _cli(*args: str, **kwargs) -> list[str]:
    return [sys.executable, "-m", "crossdeploy.cli", *args]


def test_serve_refuses_another_repository_digest_in_one_line(small, tmp_path):
    env = {**os.environ, "CROSSDEPLOY_WORKDIR": str(tmp_path / "work")}
    printed = subprocess.run(_cli("digest", "--repository", str(small.root)), capture_output=True, text=True, env=env, timeout=120)
    assert printed.returncode == 0 and printed.stdout.strip() == small.digest() and len(printed.stdout.splitlines()) == 1
    wrong = "0" * 64
    for expected, message in ((wrong, f"has digest {small.digest()}, not the expected {wrong}"), ("abc", "64 hex digits")):
        run = subprocess.run(_cli("serve", "--repository", str(small.root), "--port", str(free_port()), "--expect-digest", expected),
                             capture_output=True, text=True, env=env, timeout=300)
        lines = run.stderr.strip().splitlines()
        assert run.returncode != 0 and len(lines) == 1 and lines[0].startswith("crossdeploy: error:") and message in lines[0], run.stderr


@pytest.mark.parametrize("compose", [False, True], ids=["--expect-digest", "compose's environment"])
def test_serve_starts_on_the_expected_digest_or_as_compose_configures_it(small, tmp_path, compose):
    """compose passes CROSSDEPLOY_* through with empty defaults: an empty token means "generate one", an empty
    digest "pin nothing"."""
    port, work = free_port(), tmp_path / "work"
    env = {**os.environ, "CROSSDEPLOY_WORKDIR": str(work)}
    args = ["serve", "--repository", str(small.root), "--port", str(port)]
    if compose:
        env.update(CROSSDEPLOY_MODEL_CONTROL_MODE="explicit", CROSSDEPLOY_MANAGEMENT_TOKEN="", CROSSDEPLOY_EXPECT_DIGEST="")
    else:
        args += ["--expect-digest", small.digest().upper()]
    log = (tmp_path / "serve.log").open("w")
    server = subprocess.Popen(_cli(*args), stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 300
        while True:
            assert server.poll() is None and time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v2/health/ready", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        printed = (tmp_path / "serve.log").read_text()
        load = f"http://127.0.0.1:{port}/v2/repository/models/torch-onnx/load"
        if compose:
            token = (work / "management_token").read_text().strip()
            assert f"token written to {work / 'management_token'}" in printed and token not in printed
            assert httpx.post(load, headers={"Authorization": f"Bearer {token}"}, timeout=60).status_code == 200
        else:
            assert "repository pinned (--expect-digest)" in printed and "model control: none" in printed
            assert httpx.post(load, timeout=60).status_code == 403
    finally:
        server.terminate()
        server.wait(60)
        log.close()

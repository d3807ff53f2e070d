"""The gateway through real clients on a live uvicorn: tritonclient (KServe V2, JSON and binary), TF Serving
REST, TorchServe (JSON and PNG uploads), /v1/compare against the parity check, /metrics."""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from PIL import Image

from crossdeploy.models.data import load_split

from .live import ENGINES, gateway_on

TESTDATA = Path(__file__).parent / "testdata"
MAX_BATCH = 256
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", params=ENGINES)
def live(repository, request):
    with gateway_on(request.param, repository, request, max_batch=MAX_BATCH) as gateway:
        yield gateway


@pytest.fixture(scope="module")
def http(live):
    with httpx.Client(base_url=live.url, timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def client(live):
    return triton.InferenceServerClient(live.address, network_timeout=60)


@pytest.fixture(scope="module")
def samples():
    split = load_split(seed=0)
    return split.x_test[:16].astype(np.float32), split.y_test[:16]


def _infer(client, name, x, binary, version=""):
    tensor = triton.InferInput("image", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x, binary_data=binary)
    wanted = [triton.InferRequestedOutput("logits", binary_data=binary)]
    return client.infer(name, [tensor], outputs=wanted, request_id=f"req-{name}", model_version=version)


def test_server_and_model_metadata(client, repository):
    assert client.is_server_live() and client.is_server_ready()
    assert "binary_tensor_data" in client.get_server_metadata()["extensions"]
    for name in repository.names():
        assert client.is_model_ready(name)
        meta = client.get_model_metadata(name)
        assert meta["inputs"] == [{"name": "image", "datatype": "FP32", "shape": [-1, 8, 8]}]
        assert meta["outputs"] == [{"name": "logits", "datatype": "FP32", "shape": [-1, 10]}]
        assert meta["versions"] and meta["platform"]
        config = client.get_model_config(name)
        assert config["crossdeploy"]["name"] == name and config["input"][0]["dims"] == [-1, 8, 8]


def test_every_variant_json_and_binary_agree(client, repository, samples):
    x, y = samples
    for name in repository.names():
        binary, plain = _infer(client, name, x, True), _infer(client, name, x, False)
        assert binary.get_response()["id"] == f"req-{name}"
        a, b = binary.as_numpy("logits"), plain.as_numpy("logits")
        assert a.shape == (16, 10) and a.dtype == np.float32
        np.testing.assert_array_equal(a, b)  # the JSON transport loses nothing: float32 shortest round-trip
        assert (a.argmax(1) == y).mean() >= 0.9, name
        version = binary.get_response()["model_version"]
        np.testing.assert_array_equal(_infer(client, name, x, True, version).as_numpy("logits"), a)


def test_classification_extension_and_statistics(client, samples):
    x, y = samples
    tensor = triton.InferInput("image", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x)
    result = client.infer("torch-onnx", [tensor], outputs=[triton.InferRequestedOutput("logits", class_count=3)])
    top = result.as_numpy("logits")
    assert top.shape == (16, 3)
    logits = _infer(client, "torch-onnx", x, True).as_numpy("logits")
    for row, scores in zip(top, logits):
        value, index = row[0].decode().split(":")
        assert int(index) == scores.argmax() and float(value) == pytest.approx(scores.max(), abs=1e-5)
    stats = client.get_inference_statistics("torch-onnx")["model_stats"][0]
    assert stats["inference_count"] >= 16 and stats["execution_count"] >= 1
    for phase in ("success", "queue", "compute_input", "compute_infer", "compute_output"):
        assert stats["inference_stats"][phase]["count"] >= 1 and stats["inference_stats"][phase]["ns"] > 0
    assert {s["name"] for s in client.get_inference_statistics()["model_stats"]} >= {"torch-onnx", "keras-onnx"}


def test_compressed_requests_and_repository_index(client, http, samples):
    x, _ = samples
    tensor = triton.InferInput("image", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x)
    for algorithm in ("gzip", "deflate"):
        out = client.infer("keras-onnx", [tensor], request_compression_algorithm=algorithm).as_numpy("logits")
        np.testing.assert_array_equal(out, _infer(client, "keras-onnx", x, True).as_numpy("logits"))
    index = client.get_model_repository_index()
    assert {row["name"] for row in index} >= {"torch-eager", "keras-eager"} and all(r["state"] == "READY" for r in index)


def test_tfserving_row_columnar_status_metadata(http, samples):
    x, y = samples
    status = http.get("/v1/models/keras-savedmodel").json()["model_version_status"]
    assert status[0]["state"] == "AVAILABLE" and status[0]["status"]["error_code"] == "OK"
    signature = http.get("/v1/models/keras-savedmodel/metadata").json()["metadata"]["signature_def"]["signature_def"]
    assert signature["serving_default"]["inputs"]["image"]["dtype"] == "DT_FLOAT"
    row = http.post("/v1/models/keras-savedmodel:predict", json={"instances": x.tolist()}).json()["predictions"]
    named = http.post("/v1/models/keras-savedmodel:predict", json={"instances": [{"image": i} for i in x.tolist()]}).json()
    columnar = http.post("/v1/models/keras-savedmodel:predict", json={"signature_name": "serving_default", "inputs": {"image": x.tolist()}}).json()
    np.testing.assert_array_equal(np.array(row), np.array(named["predictions"]))
    np.testing.assert_array_equal(np.array(row), np.array(columnar["outputs"]))
    assert (np.array(row).argmax(1) == y).mean() >= 0.9
    body = json.loads((TESTDATA / "tfserving_predict.json").read_text())
    version = status[0]["version"]
    assert np.array(http.post(f"/v1/models/torch-tflite/versions/{version}:predict", json=body).json()["predictions"]).argmax(1).tolist() == [0, 3]


def _png(image: np.ndarray, dark_on_light: bool, size: int, rgb: bool = False) -> bytes:
    pixels = (image * 255 / 16).astype(np.uint8)
    picture = Image.fromarray(255 - pixels if dark_on_light else pixels).resize((size, size), Image.Resampling.BILINEAR)
    canvas = Image.new("L", (size + 40, size + 20), 255 if dark_on_light else 0)
    canvas.paste(picture, (20, 10))
    out = io.BytesIO()
    (canvas.convert("RGB") if rgb else canvas).save(out, "PNG")
    return out.getvalue()


def test_torchserve_ping_json_and_image_uploads(http, samples):
    x, y = samples
    assert http.get("/ping").json() == {"status": "Healthy"}
    assert any(m["modelName"] == "torch-torchscript" for m in http.get("/models").json()["models"])
    assert http.get("/models/torch-torchscript").json()[0]["workers"][0]["status"] == "READY"
    top = http.post("/predictions/torch-torchscript", json={"data": x[0].tolist()}).json()
    assert len(top) == 5 and max(top, key=top.get) == str(y[0]) and sum(top.values()) <= 1.0 + 1e-6
    batch = http.post("/predictions/torch-torchscript", json={"data": x[:4].tolist()}).json()
    assert [max(p, key=p.get) for p in batch] == [str(v) for v in y[:4]]
    hits = 0
    for i, (image, label) in enumerate(zip(x, y)):
        png = _png(image, dark_on_light=i % 2 == 0, size=48 + 16 * (i % 4), rgb=i % 3 == 0)
        if i % 2:
            answer = http.post("/predictions/keras-tflite", content=png, headers={"Content-Type": "image/png"}).json()
        else:
            answer = http.post("/predictions/keras-tflite", files={"data": ("digit.png", png, "image/png")}).json()
        hits += max(answer, key=answer.get) == str(label)
    assert hits >= 13, f"{hits}/16 uploads classified right"
    shipped = http.put("/predictions/torch-onnx", content=(TESTDATA / "digit-3.png").read_bytes()).json()
    assert max(shipped, key=shipped.get) == "3"


def test_compare_agrees_with_the_parity_check(http, repository, samples):
    from crossdeploy.export.parity import run_parity

    x, y = samples
    parity = {v.config.name: v.result for v in run_parity(repository, write=False).variants}
    answer = http.post("/v1/compare", json={"image": x.tolist()}).json()
    rows = {row["name"]: row for row in answer["variants"]}
    assert set(rows) == set(repository.names()) and all(r["status"] == "ok" for r in rows.values())
    for name, row in rows.items():
        assert row["reference"] in ("torch-eager", "keras-eager")
        # these 16 samples are part of the parity split: no diff can exceed the parity report's maximum
        assert row["max_abs_diff_vs_reference"] <= parity[name].outputs[0].max_abs + 1e-7, name
        if row["precision"] == "fp32":
            assert row["within_tolerance"] is True and row["predicted"] == rows[row["reference"]]["predicted"]
        assert row["transport"]["v2_binary"]["identical"] and row["transport"]["v2_json"]["max_abs_diff"] == 0.0
        same_source = [n for n in rows if n != name and rows[n]["source_framework"] == row["source_framework"]]
        assert sorted(row["max_abs_diff_vs_same_source"]) == sorted(same_source)
        assert row["inference_ms"] > 0
    predictions = np.array([r["predicted"] for r in rows.values()])
    assert answer["agreement"]["all_agree"] == bool((predictions == predictions[0]).all())
    assert answer["agreement"]["majority"] == rows["torch-eager"]["predicted"]
    assert np.mean(np.array(answer["agreement"]["majority"]) == y) >= 0.9
    subset = http.post("/v1/compare", json={"data": x[0].tolist(), "variants": ["torch-onnx", "keras-onnx"]}).json()
    assert [r["name"] for r in subset["variants"]] == ["torch-onnx", "keras-onnx"]
    image = http.post("/v1/compare?variants=torch-onnx", content=(TESTDATA / "digit-3.png").read_bytes(),
                      headers={"Content-Type": "image/png"}).json()
    assert image["variants"][0]["predicted"] == [3] and image["input"]["from"] == "image"


def test_metrics_expose_requests_phases_models_and_process(http, repository):
    http.post("/v2/models/torch-onnx/infer", content=(TESTDATA / "v2_infer.json").read_bytes())
    text = http.get("/metrics").text
    assert 'crossdeploy_requests_total{model="torch-onnx",protocol="v2",status="success",version="1"}' in text
    for phase in ("queue", "decode", "inference", "encode"):
        assert f'crossdeploy_request_phase_seconds_count{{model="torch-onnx",phase="{phase}",protocol="v2"}}' in text
    versions = sum(len(repository.config(name).versions) for name in repository.names())
    assert f'crossdeploy_models_loaded{{state="READY"}} {versions:.1f}' in text
    assert "process_resident_memory_bytes" in text and "crossdeploy_requests_in_flight" in text


def test_openapi_documents_every_protocol(http):
    spec = http.get("/openapi.json").json()
    for path in ("/v2/models/{name}/infer", "/v1/models/{name}:predict", "/predictions/{name}", "/v1/compare"):
        assert path in spec["paths"], path
    assert "InferenceRequest" in spec["components"]["schemas"]
    assert http.get("/docs").status_code == 200


# --------------------------------------------------------------------------------------- bad input
GOOD = (TESTDATA / "v2_infer.json").read_bytes()
V2 = "/v2/models/torch-onnx/infer"


def _v2(**tensor):
    base = {"name": "image", "datatype": "FP32", "shape": [1, 8, 8], "data": [0.0] * 64}
    return json.dumps({"inputs": [{**base, **tensor}]}).encode()


def _binary(array: np.ndarray, size: int | None = None, header_extra: int = 0) -> tuple[bytes, dict]:
    raw = array.astype(np.float32).tobytes()
    header = json.dumps({"inputs": [{"name": "image", "datatype": "FP32", "shape": list(array.shape),
                                     "parameters": {"binary_data_size": len(raw) if size is None else size}}]}).encode()
    return header + raw, {"Inference-Header-Content-Length": str(len(header) + header_extra)}


def _repeated_binary_size() -> tuple[bytes, dict]:
    body, headers = _binary(np.zeros((1, 8, 8)))
    header = int(headers["Inference-Header-Content-Length"])
    repeated = body[:header].replace(b'"binary_data_size": 256', b'"binary_data_size": 256, "binary_data_size": 0')
    return repeated + body[header:], {"Inference-Header-Content-Length": str(len(repeated))}


NAN = np.zeros((1, 8, 8), np.float32)
NAN[0, 3, 3] = np.nan
BAD = [
    # (id, method, path, body, headers, status, words in the error)
    ("unknown model", "POST", "/v2/models/nope/infer", GOOD, {}, 404, "not in the repository"),
    ("unknown version", "POST", "/v2/models/torch-onnx/versions/99/infer", GOOD, {}, 404, "version 99"),
    ("version not a number", "POST", "/v2/models/torch-onnx/versions/latest/infer", GOOD, {}, 404, "not in the repository"),
    ("malformed json", "POST", V2, b'{"inputs": [', {}, 400, "malformed JSON"),
    # One deeply nested request crashed TF Serving (CVE-2025-0649): each decoder refuses it with a 400.
    ("nested json v2", "POST", V2, b"[" * 100_000, {}, 400, "depth limit"),
    ("nested data v2", "POST", V2, b'{"inputs": [{"name": "image", "shape": [1, 8, 8], "datatype": "FP32", "data": '
     + b"[" * 5000 + b"]" * 5000 + b"}]}", {}, 400, "depth limit"),
    ("nested json tfserving", "POST", "/v1/models/torch-onnx:predict", b'{"instances": ' + b"[" * 100_000 + b"}", {}, 400,
     "depth limit"),
    ("nested json torchserve", "POST", "/predictions/torch-onnx", b'{"data": ' + b"[" * 100_000 + b"}", {}, 400, "depth limit"),
    ("nested json compare", "POST", "/v1/compare", b"[" * 100_000, {}, 400, "depth limit"),
    ("NaN literal", "POST", V2, _v2(data=[0.0] * 64).replace(b"[0.0, ", b"[NaN, ", 1), {}, 400, "malformed JSON"),
    ("number beyond double", "POST", V2, _v2(data=[0.0] * 64).replace(b"[0.0, ", b"[1e999, ", 1), {}, 400, "infinity"),
    ("invalid utf-8", "POST", V2, _v2(name="image").replace(b'"image"', b'"image\xff"', 1), {}, 400, "UTF-8"),
    ("empty body", "POST", V2, b"", {}, 400, "empty"),
    ("not an object", "POST", V2, b"[1, 2]", {}, 400, "JSON object"),
    ("missing inputs", "POST", V2, b'{"id": "x"}', {}, 400, "'inputs'"),
    ("empty inputs", "POST", V2, b'{"inputs": []}', {}, 400, "'inputs'"),
    ("wrong input name", "POST", V2, _v2(name="pixels"), {}, 400, "unexpected inference input 'pixels'"),
    ("wrong element count", "POST", V2, _v2(data=[1.0] * 63), {}, 400, "needs 64 values, data has 63"),
    ("wrong rank", "POST", V2, _v2(shape=[1, 64], data=[0] * 64), {}, 400, "does not match"),
    ("negative shape", "POST", V2, _v2(shape=[-1, 8, 8]), {}, 400, "negative"),
    ("absurd shape", "POST", V2, _v2(shape=[10**12, 8, 8]), {}, 400, "above the maximum"),
    ("shape not integers", "POST", V2, _v2(shape=["1", 8, 8]), {}, 400, "list of integers"),
    ("wrong datatype", "POST", V2, _v2(datatype="FP64"), {}, 400, "expects 'FP32'"),
    ("strings as numbers", "POST", V2, _v2(data=["0"] * 64), {}, 400, "must be numbers"),
    ("nulls in data", "POST", V2, _v2(data=[None] * 64), {}, 400, "must be numbers"),
    ("ragged data", "POST", V2, _v2(data=[[0] * 8] * 7 + [[0] * 7]), {}, 400, "not a regular array"),
    ("overflow to inf", "POST", V2, _v2(data=[1e39] * 64), {}, 400, "NaN or infinity"),
    ("nan in binary", "POST", V2, *_binary(NAN), 400, "NaN or infinity"),
    ("batch above max", "POST", V2, *_binary(np.zeros((MAX_BATCH + 1, 8, 8))), 400, "above the maximum"),
    ("binary size mismatch", "POST", V2, *_binary(np.zeros((1, 8, 8)), size=100), 400, "binary_data_size 100"),
    ("header length too large", "POST", V2, *_binary(np.zeros((1, 8, 8)), header_extra=10**6), 400, "Inference-Header-Content-Length"),
    ("unknown output", "POST", V2, json.dumps({**json.loads(GOOD), "outputs": [{"name": "probs"}]}).encode(), {}, 400, "unexpected inference output"),
    ("bad classification", "POST", V2, json.dumps({**json.loads(GOOD), "outputs": [{"name": "logits", "parameters": {"classification": -2}}]}).encode(), {}, 400, "classification"),
    ("broken gzip", "POST", V2, b"not gzip", {"Content-Encoding": "gzip"}, 400, "not valid gzip"),
    ("unknown encoding", "POST", V2, GOOD, {"Content-Encoding": "br"}, 415, "Content-Encoding"),
    ("wrong content type", "POST", V2, GOOD, {"Content-Type": "text/xml"}, 415, "text/xml"),
    ("tfs both formats", "POST", "/v1/models/torch-onnx:predict", b'{"instances": [], "inputs": []}', {}, 400, "exactly one"),
    ("tfs neither format", "POST", "/v1/models/torch-onnx:predict", b'{"signature_name": "serving_default"}', {}, 400, "exactly one"),
    ("tfs unknown signature", "POST", "/v1/models/torch-onnx:predict", b'{"signature_name": "x", "instances": [[0]]}', {}, 400, "not found in signature def"),
    ("tfs wrong shape", "POST", "/v1/models/torch-onnx:predict", b'{"instances": [[1, 2, 3]]}', {}, 400, "shape [-1, 8, 8]"),
    ("tfs strings", "POST", "/v1/models/torch-onnx:predict", b'{"instances": [["a"]]}', {}, 400, "must be numbers"),
    ("tfs unknown model", "GET", "/v1/models/nope", b"", {}, 404, "not in the repository"),
    ("ts undecodable image", "POST", "/predictions/torch-onnx", b"\x89PNG\r\n\x1a\n broken", {"Content-Type": "image/png"}, 400, "not an image"),
    ("ts blank image", "POST", "/predictions/torch-onnx", None, {"Content-Type": "image/png"}, 400, "no visible digit"),
    ("ts json without data", "POST", "/predictions/torch-onnx", b'{"pixels": 1}', {"Content-Type": "application/json"}, 400, "'data'"),
    ("ts wrong content type", "POST", "/predictions/torch-onnx", b"hello", {"Content-Type": "text/plain"}, 415, "text/plain"),
    ("ts unknown model", "POST", "/predictions/nope", b'{"data": [0]}', {"Content-Type": "application/json"}, 404, "not in the repository"),
    ("compare unknown variant", "POST", "/v1/compare", b'{"image": [0], "variants": ["nope"]}', {}, 404, "'nope'"),
    ("compare no input", "POST", "/v1/compare", b'{"variants": ["torch-onnx"]}', {}, 400, "needs 'image'"),
    ("compare input every variant refuses", "POST", "/v1/compare", b'{"image": [[1, 2, 3]]}', {}, 400, "shape"),
    ("compare empty variant list", "POST", "/v1/compare", b'{"image": [0], "variants": []}', {}, 400, "'variants' is empty"),
    ("output parameters not an object", "POST", V2, json.dumps({**json.loads(GOOD), "outputs": [{"name": "logits", "parameters": "x"}]}).encode(), {}, 400, "'parameters' must be an object"),
    ("index body not an object", "POST", "/v2/repository/index", b"[]", {}, 400, "JSON object"),
    ("unicode digit version", "POST", "/v2/models/torch-onnx/versions/%C2%B2/infer", GOOD, {}, 404, "not in the repository"),
    ("negative sample seed", "GET", "/v1/samples?seed=-1", b"", {}, 400, "non-negative"),
    ("image too large", "POST", "/predictions/torch-onnx", "huge", {"Content-Type": "image/png"}, 400, "megapixels"),
    # A key named twice in one object: parsers disagree on which value wins, so no protocol picks one.
    ("repeated key v2", "POST", V2, GOOD.rstrip()[:-1] + b', "inputs": []}', {}, 400, "names 'inputs' twice"),
    ("repeated key v2 binary header", "POST", V2, *_repeated_binary_size(), 400, "names 'binary_data_size' twice"),
    ("repeated key tfserving", "POST", "/v1/models/torch-onnx:predict", b'{"instances": [[0]], "instances": [[1]]}', {}, 400,
     "names 'instances' twice"),
    ("repeated key torchserve", "POST", "/predictions/torch-onnx", b'{"data": [0], "data": [1]}', {}, 400, "names 'data' twice"),
    ("repeated key compare", "POST", "/v1/compare", b'{"image": [0], "image": [1]}', {}, 400, "names 'image' twice"),
]


def _huge_png() -> bytes:
    out = io.BytesIO()
    Image.new("L", (2100, 2100), 255).save(out, "PNG")  # 4.4 megapixels, a few KB
    return out.getvalue()


def test_sixteen_bit_and_transparent_uploads_are_read(http, samples):
    x, y = samples
    for mode in ("I;16", "LA"):
        ink = (x[0] * 65535 / 16).astype(np.uint16) if mode == "I;16" else (x[0] * 255 / 16).astype(np.uint8)
        if mode == "I;16":
            picture = Image.fromarray((65535 - ink).astype(np.uint16)).resize((64, 64), Image.Resampling.NEAREST)
        else:  # black ink on a transparent background, as canvases export
            picture = Image.merge("LA", [Image.new("L", (8, 8), 0), Image.fromarray(ink)]).resize((64, 64), Image.Resampling.NEAREST)
        out = io.BytesIO()
        picture.save(out, "PNG")
        answer = http.post("/predictions/torch-onnx", content=out.getvalue(), headers={"Content-Type": "image/png"})
        assert answer.status_code == 200, (mode, answer.text)
        assert max(answer.json(), key=answer.json().get) == str(y[0]), mode


def _blank_png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (40, 40), (255, 255, 255)).save(out, "PNG")
    return out.getvalue()


@pytest.mark.parametrize("case", BAD, ids=[c[0] for c in BAD])
def test_bad_input_gets_a_clear_error_and_the_next_request_succeeds(http, case):
    _, method, path, body, headers, status, words = case
    body = _blank_png() if body is None else _huge_png() if body == "huge" else body
    headers = {"Content-Type": "application/json", **headers} if method == "POST" and "Content-Type" not in headers and not path.startswith("/v2") else headers
    response = http.request(method, path, content=body or None, headers=headers)
    assert response.status_code == status, response.text
    error = response.json()
    if path.startswith("/predictions"):
        assert error["code"] == status and error["type"].endswith("Exception") and words in error["message"]
    else:
        assert words in error["error"], error
    good = http.post(V2, content=GOOD)
    assert good.status_code == 200 and good.json()["id"] == "digit-0"


def test_gzip_body_that_inflates_past_the_limit_is_refused(live, http):
    bomb = gzip.compress(b"0" * (live.settings.max_body_bytes + 1024))
    response = http.post(V2, content=bomb, headers={"Content-Encoding": "gzip"})
    assert response.status_code == 413 and "limit" in response.json()["error"]
    assert http.post(V2, content=GOOD).status_code == 200


def test_declared_oversized_body_is_refused_before_it_is_read(live, http):
    import socket

    with socket.create_connection(("127.0.0.1", live.port), timeout=30) as sock:
        sock.sendall(f"POST {V2} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {10**9}\r\n\r\n".encode())  # the gigabyte never comes
        answer = b""
        while b"limit" not in answer:  # the status line and the body may come in separate segments (Ray's proxy)
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 413") and b"limit" in answer
    assert http.post(V2, content=GOOD).status_code == 200

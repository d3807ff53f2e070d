"""/openapi.json tells the truth: it is a valid OpenAPI document; every request body in tests/testdata and every
answer the gateway gives (good ones, and each error the bad-input table provokes) fits what it documents for
that route, status and content type; and schemathesis, reading only the document, finds nothing."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import orjson
import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate as validate_spec
from PIL import Image

from crossdeploy.repository import ModelRepository
from crossdeploy.serving.codecs import tfserving, torchserve, v2_binary, v2_json
from crossdeploy.serving.where import TIMEOUT_S as WHERE_TIMEOUT_S

from .live import LiveGateway
from .test_gateway import BAD, _blank_png, _huge_png, http, live  # noqa: F401  (the same live gateway fixtures)

TESTDATA = Path(__file__).parent / "testdata"
ROOT = Path(__file__).parent.parent
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def spec(http) -> dict:
    return http.get("/openapi.json").json()


def _pointer(*parts: str) -> str:
    return "#/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


def _operation(spec: dict, method: str, path: str) -> tuple[str, dict]:
    """The documented path template serving `path`, and its operation for `method`."""
    for template, item in spec["paths"].items():
        pattern = "^" + re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template)) + "$"
        if re.match(pattern, path) and method.lower() in item:
            return template, item[method.lower()]
    raise AssertionError(f"{method} {path} is not documented")


def _validate(spec: dict, pointer: str, instance) -> None:
    """Validates against the schema at `pointer` inside the document (so its $refs resolve)."""
    Draft202012Validator({**spec, "$ref": pointer}).validate(instance)


def check_response(spec: dict, method: str, path: str, response: httpx.Response) -> None:
    template, operation = _operation(spec, method, path.split("?")[0])
    status = str(response.status_code)
    assert status in operation["responses"], f"{method} {template} answered {status}, documented {sorted(operation['responses'])}"
    media = response.headers["content-type"].split(";")[0]
    content = operation["responses"][status].get("content", {})
    assert media in content, f"{method} {template} {status} answered {media}, documented {sorted(content)}"
    if media == "application/json":
        _validate(spec, _pointer("paths", template, method.lower(), "responses", status, "content", media, "schema"),
                  response.json())


def test_the_document_is_valid_openapi_with_unique_operation_ids(spec):
    validate_spec(spec)
    operations = [op for item in spec["paths"].values() for op in item.values()]
    ids = [op["operationId"] for op in operations]
    assert len(ids) == len(set(ids))
    assert not {"HTTPValidationError", "ValidationError"} & set(spec["components"]["schemas"])
    assert all("422" not in op["responses"] for op in operations)  # the gateway never answers 422
    for template, item in spec["paths"].items():  # parameters: exactly the template's, plus real queries/headers
        for op in item.values():
            in_path = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert in_path == set(re.findall(r"\{(\w+)\}", template)), template
            assert {p["name"] for p in op.get("parameters", []) if p["in"] == "query"} <= {"variants", "count", "seed"}


def test_every_accepted_content_type_and_parameter_is_documented(spec):
    infer = spec["paths"]["/v2/models/{name}/infer"]["post"]
    assert {"application/json", "application/octet-stream"} <= set(infer["requestBody"]["content"])
    assert "Inference-Header-Content-Length" in {p["name"] for p in infer["parameters"] if p["in"] == "header"}
    for path in ("/predictions/{name}", "/v1/compare"):
        assert {"application/json", "image/*", "application/octet-stream", "multipart/form-data"} <= set(
            spec["paths"][path]["post"]["requestBody"]["content"]), path
    assert {p["name"] for p in spec["paths"]["/v1/compare"]["post"]["parameters"]} == {"variants"}
    assert {"post", "put"} <= set(spec["paths"]["/predictions/{name}"])


@pytest.mark.parametrize("file, path", [("v2_infer.json", "/v2/models/{name}/infer"), ("compare.json", "/v1/compare"),
                                        ("tfserving_predict.json", "/v1/models/{name}:predict"),
                                        ("torchserve.json", "/predictions/{name}")])
def test_each_testdata_body_fits_its_documented_request(spec, file, path):
    _validate(spec, _pointer("paths", path, "post", "requestBody", "content", "application/json", "schema"),
              json.loads((TESTDATA / file).read_text()))


def _png(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray((255 - array * 255 / 16).astype(np.uint8)).resize((64, 64)).save(out, "PNG")
    return out.getvalue()


X = np.asarray(json.loads((TESTDATA / "compare.json").read_text())["image"], dtype=np.float32)[None]
GOOD_REQUESTS = [
    ("GET", "/v2", None, {}), ("GET", "/v2/health/live", None, {}), ("GET", "/v2/health/ready", None, {}),
    ("GET", "/v2/models/torch-onnx", None, {}), ("GET", "/v2/models/torch-onnx/versions/1", None, {}),
    ("GET", "/v2/models/torch-onnx/ready", None, {}), ("GET", "/v2/models/torch-onnx/config", None, {}),
    ("GET", "/v2/models/torch-onnx/stats", None, {}), ("GET", "/v2/models/stats", None, {}),
    ("POST", "/v2/repository/index", b'{"ready": true}', {}),
    ("POST", "/v2/models/torch-onnx/infer", *v2_json.encode_request({"image": X})),
    ("POST", "/v2/models/torch-onnx/infer", *v2_binary.encode_request({"image": X}, binary_output=True)),
    ("POST", "/v2/models/torch-onnx/versions/1/infer", *v2_binary.encode_request({"image": X})),
    ("GET", "/v1/models/keras-savedmodel", None, {}), ("GET", "/v1/models/keras-savedmodel/metadata", None, {}),
    ("POST", "/v1/models/keras-savedmodel:predict", *tfserving.encode_request({"image": X}, "row")),
    ("POST", "/v1/models/keras-savedmodel/versions/1:predict", *tfserving.encode_request({"image": X}, "columnar")),
    ("GET", "/ping", None, {}), ("GET", "/models", None, {}), ("GET", "/models/torch-onnx", None, {}),
    ("POST", "/predictions/torch-onnx", *torchserve.encode_request({"image": X})),
    ("PUT", "/predictions/torch-onnx/1", (TESTDATA / "digit-3.png").read_bytes(), {"Content-Type": "image/png"}),
    ("POST", "/v1/compare", (TESTDATA / "compare.json").read_bytes(), {"Content-Type": "application/json"}),
    ("POST", "/v1/compare?variants=torch-onnx,keras-tflite", _png(X[0]), {"Content-Type": "image/png"}),
    ("GET", "/v1/samples?count=3&seed=1", None, {}), ("GET", "/v1/artifacts/torch-onnx/model.onnx", None, {}),
    ("GET", "/v1/reports/parity/parity.json", None, {}), ("GET", "/metrics", None, {}),
]


@pytest.mark.parametrize("case", GOOD_REQUESTS, ids=[f"{c[0]} {c[1]}" for c in GOOD_REQUESTS])
def test_every_answer_fits_the_documented_response(spec, http, case):
    method, path, body, headers = case
    response = http.request(method, path, content=body, headers=headers)
    assert response.status_code < 500, response.text
    check_response(spec, method, path, response)


@pytest.mark.parametrize("case", BAD, ids=[c[0] for c in BAD])
def test_every_provoked_error_fits_the_documented_error(spec, http, case):
    _, method, path, body, headers, status, _ = case
    body = _blank_png() if body is None else _huge_png() if body == "huge" else body
    headers = {"Content-Type": "application/json", **headers} if method == "POST" and "Content-Type" not in headers and not path.startswith("/v2") else headers
    response = http.request(method, path, content=body or None, headers=headers)
    assert response.status_code == status
    check_response(spec, method, path, response)


FUZZER_FOUND = [  # what the fuzzer's first runs found the gateway accepting against its document
    ("POST", "/v1/compare", b'{"image": [[0]], "variants": null}', 400),
    ("POST", "/v2/models/torch-onnx/infer", orjson.dumps({**json.loads((TESTDATA / "v2_infer.json").read_text()), "id": 5}), 400),
    ("POST", "/v1/models/torch-onnx:predict", orjson.dumps({"instances": [[[True] + [0] * 7] + [[0] * 8] * 7]}), 400),
    ("OPTIONS", "/predictions/torch-onnx", b"", 405),
]


@pytest.mark.parametrize("case", FUZZER_FOUND, ids=[f"{c[0]} {c[1]} {c[2][:40]!r}" for c in FUZZER_FOUND])
def test_what_the_fuzzer_found_is_refused_as_documented(spec, http, case):
    method, path, body, status = case
    response = http.request(method, path, content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == status, response.text
    if method == "OPTIONS":
        assert response.headers["Allow"] == "POST, PUT"
    else:
        check_response(spec, method, path, response)


# --------------------------------------------------------------------------------------- the fuzzer
# Schemathesis's command line, reading only /openapi.json: every phase that needs no links (examples, coverage,
# fuzzing), positive and negative data, every check. (Its pytest plugin cannot take a fixture-built schema on
# pytest 9.2, which renamed the node attribute the plugin rewrites; the CLI is the same engine.) tests/fuzz_hooks.py
# draws the payloads JSON Schema cannot describe. Load and unload run in runs of their own, last and short:
# each real load reopens every version of a variant (seconds), and an unload takes the variant away from the
# operations tested after it. They run twice: on the shared gateway, where model control is off (403), and on a
# small gateway of their own in explicit mode with the token, where they do load and unload; there schemathesis's
# ignored_auth check replays them without the token and wants the documented 401.
FUZZ = ["--checks", "all", "--phases", "examples,coverage,fuzzing", "--mode", "all", "--seed", "1",
        "--generation-database", "none", "--no-color", "--workers", "1", "--request-timeout", "60"]
MUTATING = ["v2_repository_load", "v2_repository_unload"]
# A diagnosis (`crossdeploy diverge` in a child process) takes seconds by design: its own short run, held to the
# bound the operation itself keeps (serving/where.py) instead of schemathesis's default 10 s.
DIAGNOSIS = ["web_where"]
TOKEN = "test-token"


def _fuzz(live, folder: Path, *arguments: str) -> None:
    environment = {**os.environ, "SCHEMATHESIS_HOOKS": "tests.fuzz_hooks",
                   "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run([str(Path(sys.executable).parent / "st"), "run", f"{live.url}/openapi.json", *FUZZ, *arguments],
                         capture_output=True, text=True, cwd=folder, env=environment, timeout=600)
    assert run.returncode == 0, run.stdout[-20000:] + run.stderr[-5000:]


def test_the_fuzzer_finds_nothing(live, repository, tmp_path):
    _fuzz(live, tmp_path, "--max-examples", "8", *[f"--exclude-operation-id={op}" for op in MUTATING + DIAGNOSIS])
    _fuzz(live, tmp_path, "--max-examples", "2", "--max-response-time", str(WHERE_TIMEOUT_S + 10),
          *[f"--include-operation-id={op}" for op in DIAGNOSIS])
    mutating = [f"--include-operation-id={op}" for op in MUTATING]
    # Model control off: 403 whatever the headers. Schemathesis reads the bearer scheme as a required header and
    # wants 401 without it, but with model control off there is no token that would do: 403 says what to change.
    _fuzz(live, tmp_path, "--max-examples", "2", "--exclude-checks", "missing_required_header", *mutating)
    small = tmp_path / "model_repository"
    for name in ("torch-onnx", "keras-tflite"):
        shutil.copytree(repository.root / name, small / name)
    # A served name for every case (a made-up one only reaches the 404): each load and unload is real, and its
    # 200 is what makes schemathesis replay it without the token and with a wrong one, wanting 401.
    managed_run = tmp_path / "managed"
    managed_run.mkdir()
    (managed_run / "schemathesis.toml").write_text('[parameters]\n"path.name" = "torch-onnx"\n')
    with LiveGateway(ModelRepository(small), model_control_mode="explicit", management_token=TOKEN) as managed:
        _fuzz(managed, managed_run, "--max-examples", "2", "--header", f"Authorization: Bearer {TOKEN}", *mutating)

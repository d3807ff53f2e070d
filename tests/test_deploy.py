"""`crossdeploy deploy k8s|kserve|triton` on the real repository, each output checked offline against a real
schema: Kubernetes' own (kubernetes-validate, strict, its latest version), the KServe SDK's typed models (with
the Kubernetes schema for the core types they embed), and Triton's ModelConfig protobuf (tritonclient)."""

from __future__ import annotations

import copy
import importlib
import json
import math
import re
import subprocess
import sys
import types
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml
from google.protobuf import text_format
from kubernetes_validate import utils as k8s_utils
from referencing import Registry, Resource
from tritonclient.grpc import model_config_pb2

from crossdeploy.deploy import generate
from crossdeploy.repository import ModelRepository, sha256_of
from crossdeploy.settings import Settings

K8S_VERSION = k8s_utils.latest_version()
K8S_SCHEMAS = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema" / f"v{K8S_VERSION}-local-strict"
# The KServe SDK cannot be installed beside our pins (it wants protobuf < 7); `make install` puts its wheel, without
# dependencies, here. Only its typed models (generated from the same Go types as the CRDs) are imported.
KSERVE_SDK = Path(sys.prefix) / "kserve-sdk"
TRITON_SERVED = {"onnx": "onnxruntime_onnx", "torchscript": "pytorch_libtorch", "aoti": "torch_aoti"}


def documents(paths: list[Path]) -> list[dict]:
    return [doc for path in paths if path.suffix == ".yaml" for doc in yaml.safe_load_all(path.read_text())]


def settings_in(tmp_path: Path, **values) -> Settings:
    return Settings(workdir=tmp_path / "work", **values)


# --- k8s ---------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def k8s_docs(repository, tmp_path_factory) -> dict[str, dict]:
    tmp = tmp_path_factory.mktemp("k8s")
    paths = generate("k8s", repository.root, tmp / "out", settings=settings_in(tmp))
    assert all(p.is_file() for p in paths)
    return {doc["kind"]: doc for doc in documents(paths)}


def test_every_k8s_document_is_valid_kubernetes(k8s_docs):
    assert set(k8s_docs) == {"ConfigMap", "Deployment", "Service", "HorizontalPodAutoscaler"}
    for doc in k8s_docs.values():
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    assert k8s_docs["HorizontalPodAutoscaler"]["apiVersion"] == "autoscaling/v2"


@pytest.mark.parametrize("damage", ["a port that is not a number", "a misspelt field"])
def test_a_broken_k8s_document_fails_the_same_check(k8s_docs, damage):
    doc = copy.deepcopy(k8s_docs["Deployment"])
    gateway = doc["spec"]["template"]["spec"]["containers"][0]
    if damage == "a port that is not a number":
        gateway["ports"][0]["containerPort"] = "eight thousand"
    else:
        gateway["readinesProbe"] = gateway.pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_the_deployment_runs_the_gateway_image_as_its_user_with_its_probes(k8s_docs):
    pod = k8s_docs["Deployment"]["spec"]["template"]
    gateway = pod["spec"]["containers"][0]
    assert gateway["image"] == "crossdeploy-gateway:latest"
    dockerfile = (Path(__file__).resolve().parents[1] / "docker" / "Dockerfile").read_text()
    uid = int(re.search(r"useradd .*--uid (\d+)", dockerfile).group(1))
    assert gateway["securityContext"]["runAsUser"] == uid and gateway["securityContext"]["readOnlyRootFilesystem"]
    assert gateway["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert gateway["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert gateway["ports"][0]["containerPort"] == 8000
    assert gateway["envFrom"] == [{"configMapRef": {"name": k8s_docs["ConfigMap"]["metadata"]["name"]}}]
    assert k8s_docs["Service"]["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    assert k8s_docs["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]["name"] == k8s_docs["Deployment"]["metadata"]["name"]
    # what the gateway writes is an emptyDir each, since the root file system is read-only
    mounts = {m["mountPath"] for m in gateway["volumeMounts"]}
    assert {"/tmp", "/app/build", "/app/.cache"} <= mounts


def test_the_configmap_is_read_back_by_the_gateways_settings(repository, tmp_path, monkeypatch):
    given = settings_in(tmp_path, max_in_flight=7, admission_wait_ms=12.5, access_log=True)
    paths = generate("k8s", repository.root, tmp_path / "out", settings=given)
    data = next(d for d in documents(paths) if d["kind"] == "ConfigMap")["data"]
    for key, value in data.items():
        assert key.removeprefix("CROSSDEPLOY_").lower() in Settings.model_fields, key
        monkeypatch.setenv(key, value)
    read = Settings()
    inside = {"repository": Path("/app/model_repository"), "workdir": Path("/app/build"), "host": "0.0.0.0", "port": 8000}
    assert read == given.model_copy(update=inside)  # every setting, the nested ones included, as given


def test_the_management_token_stays_out_of_the_configmap(repository, tmp_path):
    paths = generate("k8s", repository.root, tmp_path / "out", settings=settings_in(tmp_path, management_token="s3cr3t-t0ken"))
    assert not any("s3cr3t-t0ken" in p.read_text() for p in paths)


def memory_of(repository, tmp_path, settings) -> tuple[str, str]:
    paths = generate("k8s", repository.root, tmp_path / "out", settings=settings)
    deployment = next(d for d in documents(paths) if d["kind"] == "Deployment")
    request = deployment["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["memory"]
    return request, deployment["metadata"]["annotations"]["crossdeploy.dev/memory-request-source"]


def test_the_memory_request_comes_from_the_measured_rss_and_says_so(repository, tmp_path):
    settings = settings_in(tmp_path)
    request, source = memory_of(repository, tmp_path, settings)
    assert source.startswith("default") and "no soak report" in source

    reports = Path(settings.workdir) / "reports"
    formats = sorted({c.format for c in repository.list()})
    bench = reports / "bench" / "latest" / "results.json"
    bench.parent.mkdir(parents=True)
    bench.write_text(json.dumps({"coldstart": [{"format": formats[0], "rss_added_mb": 300.0}]}))
    request, source = memory_of(repository, tmp_path, settings)
    assert source.startswith("default") and f"measured 1 of the repository's {len(formats)} formats" in source

    bench.write_text(json.dumps({"coldstart": [{"format": f, "rss_added_mb": 100.0} for f in formats]}))
    request, source = memory_of(repository, tmp_path, settings)
    assert str(bench) in source and request == f"{64 * math.ceil(100.0 * len(formats) * 1.1 / 64)}Mi"

    soak = reports / "soak" / "report.json"
    soak.parent.mkdir(parents=True)
    soak.write_text(json.dumps({"commit": "abc1234", "rss": {"first_mb": 700.0, "warm_mb": 900.0, "last_mb": 950.0}}))
    request, source = memory_of(repository, tmp_path, settings)
    assert str(soak) in source and "abc1234" in source and request == f"{64 * math.ceil(950.0 * 1.1 / 64)}Mi"


# --- KServe ------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def kserve_models():
    if not (KSERVE_SDK / "kserve" / "models").is_dir():
        pytest.fail(f"the KServe SDK's typed models are not in {KSERVE_SDK}: `make install` puts them there")
    saved = {name: module for name, module in sys.modules.items() if name.split(".")[0] == "kserve"}
    # The SDK's package __init__ imports its model server (fastapi, grpc, ...): only kserve.models is loaded.
    package = types.ModuleType("kserve")
    package.__path__ = [str(KSERVE_SDK / "kserve")]
    sys.modules["kserve"] = package
    try:
        yield importlib.import_module("kserve.models")
    finally:
        for name in [n for n in sys.modules if n.split(".")[0] == "kserve"]:
            del sys.modules[name]
        sys.modules.update(saved)


PRIMITIVES = {"str": str, "int": int, "float": (int, float), "bool": bool, "object": object, "datetime": str}


def k8s_type_problems(value, kind: str, where: str) -> list[str]:
    """A core Kubernetes type the SDK refers to (V1Container, V1ObjectMeta, ...), against Kubernetes' strict
    schema of the same version the k8s manifests are checked with."""
    version, name = re.fullmatch(r"V(\d+(?:alpha\d+|beta\d+)?)(\w+)", kind).groups()
    exact = K8S_SCHEMAS / f"{name.lower()}-v{version}.json"
    found = [exact] if exact.is_file() else sorted(K8S_SCHEMAS.glob(f"{name.lower()}-*-v{version}.json"))
    if len(found) != 1:
        return [f"{where}: no single Kubernetes schema for {kind} ({[p.name for p in found]})"]
    schema = json.loads(found[0].read_text())
    registry = Resource.from_contents(json.loads((K8S_SCHEMAS / "_definitions.json").read_text())) @ (
        Resource.from_contents(schema) @ Registry())
    return [f"{where}.{'.'.join(map(str, e.absolute_path))}: {e.message}"
            for e in jsonschema.Draft202012Validator(schema, registry=registry).iter_errors(value)]


def sdk_problems(value, kind: str, models, where: str = "") -> list[str]:
    """`value` against the SDK's type `kind`: every key one of the type's fields (strict, as `kubectl
    --validate=strict`), every value of its field's type, and the type's own constructor checks (required fields)."""
    if kind.startswith("list["):
        if not isinstance(value, list):
            return [f"{where}: expected a list for {kind}"]
        return [p for i, item in enumerate(value) for p in sdk_problems(item, kind[5:-1], models, f"{where}[{i}]")]
    if kind.startswith("dict("):
        if not isinstance(value, dict):
            return [f"{where}: expected a mapping for {kind}"]
        inner = kind[kind.index(",") + 1:-1].strip()
        return [p for key, item in value.items() for p in sdk_problems(item, inner, models, f"{where}.{key}")]
    if kind in PRIMITIVES:
        wrong = not isinstance(value, PRIMITIVES[kind]) or (kind != "bool" and kind != "object" and isinstance(value, bool))
        return [f"{where}: {value!r} is not a {kind}"] if wrong else []
    if not hasattr(models, kind):
        return k8s_type_problems(value, kind, where)
    cls = getattr(models, kind)
    if not isinstance(value, dict):
        return [f"{where}: expected a {kind} object"]
    fields = {key: attribute for attribute, key in cls.attribute_map.items()}
    problems = [f"{where}.{key}: not a field of {kind}" for key in value if key not in fields]
    for key, item in value.items():
        if key in fields:
            problems += sdk_problems(item, cls.openapi_types[fields[key]], models, f"{where}.{key}")
    try:
        cls(**{fields[key]: item for key, item in value.items() if key in fields})
    except ValueError as exc:
        problems.append(f"{where}: {exc}")
    return problems


def kserve_problems(doc: dict, models) -> list[str]:
    kind = {"ServingRuntime": "V1alpha1ServingRuntime", "InferenceService": "V1beta1InferenceService"}[doc["kind"]]
    return sdk_problems(doc, kind, models, doc["kind"])


@pytest.fixture(scope="module")
def kserve_out(repository, tmp_path_factory) -> dict[bool, list[Path]]:
    tmp = tmp_path_factory.mktemp("kserve")
    return {per: generate("kserve", repository.root, tmp / f"out-{per}", settings=settings_in(tmp), per_variant=per,
                          storage_uri="s3://models/crossdeploy" if per else None)
            for per in (False, True)}


@pytest.mark.parametrize("per_variant", [False, True], ids=["per-repository", "per-variant"])
def test_the_kserve_resources_match_the_sdks_schema(kserve_out, kserve_models, repository, per_variant):
    docs = documents(kserve_out[per_variant])
    for doc in docs:
        assert kserve_problems(doc, kserve_models) == []
    runtime = next(d for d in docs if d["kind"] == "ServingRuntime")
    services = [d for d in docs if d["kind"] == "InferenceService"]
    formats = {f["name"] for f in runtime["spec"]["supportedModelFormats"]}
    assert {c.format for c in repository.list()} <= formats and runtime["spec"]["protocolVersions"] == ["v2"]
    assert all(s["spec"]["predictor"]["model"]["modelFormat"]["name"] in formats for s in services)
    assert all(s["spec"]["predictor"]["model"]["runtime"] == runtime["metadata"]["name"] for s in services)
    if not per_variant:
        assert len(services) == 1 and services[0]["spec"]["predictor"]["model"]["storageUri"].startswith("pvc://")
        return
    assert sorted(s["metadata"]["name"] for s in services) == repository.names()
    assert all(s["spec"]["predictor"]["model"]["storageUri"] == f"s3://models/crossdeploy/{s['metadata']['name']}"
               for s in services)


def test_each_per_variant_upload_is_a_one_variant_repository_the_gateway_accepts(kserve_out, repository):
    uploads = kserve_out[True][0].parent / "repositories"
    folders = sorted(uploads / name for name in repository.names())
    for root in folders:
        one = ModelRepository(root, sealed=True)  # sealed: every file the config lists is there, and nothing else
        (name,) = one.names()
        config, record = one.get(name)
        assert all(sha256_of(one.version_dir(name, record.version) / f.path) == f.sha256 for f in record.files)
        assert config == repository.config(name)


@pytest.mark.parametrize("damage", ["misspelt field", "string for a list", "no containers"])
def test_a_broken_kserve_resource_fails_the_sdk_check(kserve_out, kserve_models, damage):
    runtime = next(d for d in documents(kserve_out[False]) if d["kind"] == "ServingRuntime")
    service = next(d for d in documents(kserve_out[False]) if d["kind"] == "InferenceService")
    if damage == "misspelt field":
        model = service["spec"]["predictor"]["model"]
        model["storageURI"] = model.pop("storageUri")
        broken = service
    elif damage == "string for a list":
        runtime["spec"]["protocolVersions"] = "v2"
        broken = runtime
    else:
        del runtime["spec"]["containers"]
        broken = runtime
    assert kserve_problems(broken, kserve_models)


# --- Triton ------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def triton_out(repository, tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("triton")
    generate("triton", repository.root, tmp / "out", settings=settings_in(tmp))
    return tmp / "out" / "triton"


def test_each_config_pbtxt_parses_into_tritons_model_config_and_matches_the_contract(triton_out, repository):
    served = [c for c in repository.list() if c.format in TRITON_SERVED]
    assert served and sorted(p.name for p in (triton_out / "model_repository").iterdir()) == sorted(c.name for c in served)
    for contract in served:
        model = text_format.Parse((triton_out / "model_repository" / contract.name / "config.pbtxt").read_text(),
                                  model_config_pb2.ModelConfig())
        assert model.name == contract.name and model.platform == TRITON_SERVED[contract.format]
        batched = model.max_batch_size > 0
        assert batched == (contract.format != "aoti" and contract.dynamic_batch)
        assert batched == model.HasField("dynamic_batching")
        for kind, ours, theirs in (("INPUT", contract.inputs, model.input), ("OUTPUT", contract.outputs, model.output)):
            assert len(ours) == len(theirs)
            for index, (tensor, entry) in enumerate(zip(ours, theirs)):
                expected = {"onnx": tensor.name, "torchscript": f"{tensor.name}__{index}", "aoti": f"{kind}__{index}"}
                assert entry.name == expected[contract.format]
                assert model_config_pb2.DataType.Name(entry.data_type) == f"TYPE_{tensor.datatype}"
                shape = list(tensor.shape)
                assert list(entry.dims) == (shape[1:] if batched else [1, *shape[1:]] if contract.format == "aoti" else shape)
        record = contract.latest()
        default = {"onnx": "model.onnx", "torchscript": "model.pt", "aoti": "model.pt2"}[contract.format]
        artifact = triton_out / "model_repository" / contract.name / str(record.version) / (model.default_model_filename or default)
        assert sha256_of(artifact) == record.files[0].sha256


def test_the_onnx_configs_name_the_graphs_own_tensors(triton_out, repository):
    import onnx

    for contract in (c for c in repository.list() if c.format == "onnx"):
        folder = triton_out / "model_repository" / contract.name
        model = text_format.Parse((folder / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
        graph = onnx.load(str(folder / str(contract.latest().version) / "model.onnx")).graph
        assert [i.name for i in model.input] == [i.name for i in graph.input]
        assert [o.name for o in model.output] == [o.name for o in graph.output]


def test_a_broken_config_pbtxt_fails_the_parse(triton_out):
    text = next((triton_out / "model_repository").glob("*/config.pbtxt")).read_text()
    for broken in (text.replace("TYPE_FP32", "TYPE_FLOAT32"), text.replace("max_batch_size", "max_batch")):
        with pytest.raises(text_format.ParseError):
            text_format.Parse(broken, model_config_pb2.ModelConfig())


def test_every_variant_triton_cannot_serve_is_listed_with_a_reason(triton_out, repository):
    listed = json.loads((triton_out / "unsupported.json").read_text())
    markdown = (triton_out / "UNSUPPORTED.md").read_text()
    expected = sorted(c.name for c in repository.list() if c.format not in TRITON_SERVED)
    assert expected and sorted(row["variant"] for row in listed) == expected
    for row in listed:
        assert row["format"] not in TRITON_SERVED and len(row["reason"]) > 20
        assert f"| {row['variant']} | {row['format']} | {row['reason']} |" in markdown


# --- CLI -----------------------------------------------------------------------------------------------------------

def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "crossdeploy.cli", "deploy", *args], capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize("target", ["k8s", "kserve", "triton"])
def test_the_cli_prints_each_file_it_wrote(repository, tmp_path, target):
    result = cli(target, "--repository", str(repository.root), "--out", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines and all(Path(line).is_file() for line in lines)
    assert sorted(lines) == sorted(str(p) for p in (tmp_path / "out").rglob("*") if p.is_file())


def test_a_missing_or_empty_repository_or_an_unwritable_out_is_one_line(repository, tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "a-file").write_text("not a folder")
    for repo, out in ((tmp_path / "nowhere", tmp_path / "out"), (tmp_path / "empty", tmp_path / "out"),
                      (repository.root, tmp_path / "a-file")):
        result = cli("k8s", "--repository", str(repo), "--out", str(out))
        assert result.returncode != 0 and result.stdout == ""
        assert len(result.stderr.strip().splitlines()) == 1 and result.stderr.startswith("crossdeploy: error:")
        assert "Traceback" not in result.stderr

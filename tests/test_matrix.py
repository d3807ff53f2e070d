"""`crossdeploy matrix`: the built-in specs through every pathway, a converter that rejects an op, --register
into a running gateway, and every bad spec refused with exit code 2 and nothing written."""

from __future__ import annotations

import json
from pathlib import Path
import shutil
import xml.etree.ElementTree as ET

import httpx
import numpy as np
import pytest
import torch

from crossdeploy.cli import main
from crossdeploy.export.pathways import PATHWAYS
from crossdeploy.repository import ModelRepository

from .live import LiveGateway
from .test_modelspec import Tiny, samples, tiny  # samples: the loader the specs below name
from .specs import spec_text

# ---- models the specs below name as their factories (the worker process imports this module) ----


def cosh_model():
    """Keras: Dense then tf.math.cosh. tf2onnx writes ONNX Cosh, which onnx2torch has no converter for."""
    import tensorflow as tf
    import tf_keras as keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8), name="image")
    logits = keras.layers.Dense(10)(keras.layers.Flatten()(keras.layers.Rescaling(1 / 16)(inputs)))
    return keras.Model(inputs, tf.math.cosh(logits))


def linear_model():
    return tiny()


def _hangs_when(condition):
    """Stands for a converter that never returns: the model sleeps for an hour while `condition()` holds."""

    class Hangs(Tiny):
        def forward(self, image):
            if condition():
                import time

                time.sleep(3600)
            return super().forward(image)

    torch.manual_seed(0)
    return Hangs()


def hanging_model():  # torch.jit.trace hangs
    return _hangs_when(torch.jit.is_tracing)


def export_hanging_model():  # torch.export, and the dynamo ONNX exporter built on it, hang
    return _hangs_when(torch.compiler.is_exporting)


def spec_file(folder, name, framework, factory, required="[]"):
    path = folder / f"{name}.toml"
    path.write_text(spec_text(name, framework, f"tests.test_matrix:{factory}", required, 'loader = "tests.test_matrix:samples"'))
    return path


def pathway_flags(*names):
    return [arg for name in names for arg in ("--pathway", name)]


# ---- the built-in specs ----


@pytest.fixture(scope="module")
def builtin(workdir, tmp_path_factory):
    out = tmp_path_factory.mktemp("matrix")
    code = main(["matrix", "--workdir", str(workdir), "--out", str(out), "--junit", str(out / "junit.xml")])
    return code, out, json.loads((out / "matrix.json").read_text())


def test_builtin_specs_pass_every_pathway_with_numbers(builtin):
    code, out, report = builtin
    assert code == 0 and report["passed"]
    assert {(s["name"], s["framework"]) for s in report["specs"]} == {
        (m, f) for m in ("digits-cnn", "digits-transformer") for f in ("pytorch", "keras")}
    rows = {(r["model"], r["pathway"]): r for r in report["results"]}
    assert len(rows) == 2 * len(PATHWAYS)  # every pathway of both frameworks, for both models
    for (model, pathway), r in rows.items():
        assert r["status"] == "ok", (model, pathway, r["message"])
        assert r["required"] and r["size_bytes"] > 0 and r["p50_ms"] > 0
        assert r["agreement"] >= (0.98 if r["precision"] == "int8" else 1.0)
        if r["precision"] == "fp32":
            assert r["max_abs"] < 1e-4
        assert r["accuracy"] > (0.97 if model == "digits-cnn" else 0.94)
    accuracy = {(s["name"], s["framework"]): s["source_accuracy"] for s in report["specs"]}
    assert all(a > 0.95 for a in accuracy.values())  # the transformer too is trained to a real accuracy


def test_transformer_report_names_the_converter_workarounds_and_fixed_batches(builtin):
    _, out, report = builtin
    rows = {(r["model"], r["pathway"]): r for r in report["results"]}
    transformer = lambda p: rows[("digits-transformer", p)]  # noqa: E731
    assert any("keep_ncw_or_nchw_or_ncdhw_input_names" in n for n in transformer("torch-savedmodel")["notes"])
    assert any("replace_to_pseudo_operators" in n for n in transformer("torch-tflite")["notes"])
    assert any("Erfc" in n for n in transformer("keras-onnx")["notes"])
    torchscript = transformer("keras-torchscript")
    assert torchscript["max_batch"] == 1 and torchscript["batch"] == "fixed 1, rows split"
    assert "torch.jit.trace fixed the batch axis" in torchscript["batch_note"]
    # the CNN needs none of these: the same converters with their defaults
    assert not rows[("digits-cnn", "torch-savedmodel")]["notes"] and rows[("digits-cnn", "keras-torchscript")]["batch"] == "dynamic"
    assert rows[("digits-cnn", "torch-executorch")]["batch"] == "≤ 15, split"
    markdown = (out / "matrix.md").read_text()
    assert "### digits-transformer (pytorch)" in markdown and "Required pathways: all passed." in markdown
    assert (out / "matrix.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    suites = ET.parse(out / "junit.xml").getroot()
    cases = suites.findall(".//testcase")
    assert len(cases) == 2 * len(PATHWAYS) and not suites.findall(".//failure") and not suites.findall(".//skipped")


# ---- a converter that rejects an op ----


def test_a_rejected_op_fails_exactly_its_pathway_with_the_converters_message(tmp_path, workdir, capsys):
    spec = spec_file(tmp_path, "tiny-cosh", "keras", "cosh_model", '["keras-onnx", "keras-torchscript"]')
    out = tmp_path / "report"
    code = main(["matrix", str(spec), "--workdir", str(workdir), "--out", str(out), "--junit", str(out / "junit.xml"),
                 "--no-latency", *pathway_flags("keras-eager", "keras-savedmodel", "keras-onnx", "keras-torchscript")])
    assert code == 1  # a required pathway failed
    assert "1 required pathway(s) failed" in capsys.readouterr().err
    rows = {r["pathway"]: r for r in json.loads((out / "matrix.json").read_text())["results"]}
    assert set(rows) == {"keras-eager", "keras-savedmodel", "keras-onnx", "keras-torchscript"}
    failed = rows.pop("keras-torchscript")
    assert failed["status"] == "conversion failed" and failed["step"] == "export"
    assert "Converter is not implemented" in failed["message"] and "Cosh" in failed["message"]  # onnx2torch's own words
    assert all(r["status"] == "ok" and r["max_abs"] < 1e-4 for r in rows.values()), rows
    failures = ET.parse(out / "junit.xml").getroot().findall(".//failure")
    assert [f.get("type") for f in failures] == ["conversion failed"]


def test_a_parity_failure_says_where_its_chain_first_diverges(tmp_path, workdir):
    """The trained digits CNN held to a zero tolerance: torch-onnx fails parity by float rounding, and its row,
    and the JUnit failure, name the hop and the layer where the chain first leaves that tolerance."""
    builtin_spec = (Path(__file__).parents[1] / "models" / "specs" / "digits-cnn-pytorch.toml").read_text()
    text = builtin_spec.replace('name = "digits-cnn"', 'name = "digits-cnn-strict"').replace('variant_prefix = ""', "")
    text = text.replace('required = ["all"]', 'required = ["torch-onnx"]') + "\n[tolerance]\natol = 0.0\nrtol = 0.0\n"
    spec = tmp_path / "strict.toml"
    spec.write_text(text)
    out = tmp_path / "report"
    code = main(["matrix", str(spec), "--workdir", str(workdir), "--out", str(out), "--junit", str(out / "junit.xml"),
                 "--no-latency", *pathway_flags("torch-eager", "torch-onnx")])
    assert code == 1
    rows = {r["pathway"]: r for r in json.loads((out / "matrix.json").read_text())["results"]}
    failed = rows["torch-onnx"]
    assert failed["status"] == "parity failed", failed
    assert "first divergence: torch -> ONNX at" in failed["message"] and "diverge.png" in failed["message"], failed["message"]
    plot = out / "diverge" / "digits-cnn-strict-torch-onnx" / "diverge.png"
    assert f"(plot: {plot})" in failed["message"] and plot.read_bytes()[:4] == b"\x89PNG"  # outlives the run's scratch
    assert "[where it diverges](diverge/digits-cnn-strict-torch-onnx/diverge.png)" in (out / "matrix.md").read_text()
    (failure,) = ET.parse(out / "junit.xml").getroot().findall(".//failure")
    assert "first divergence" in failure.text


def test_a_hung_step_is_killed_at_the_timeout_and_the_matrix_goes_on(tmp_path, workdir):
    spec = spec_file(tmp_path, "tiny-hang", "pytorch", "hanging_model")
    out = tmp_path / "report"
    code = main(["matrix", str(spec), "--workdir", str(workdir), "--out", str(out), "--timeout", "30", "--no-latency",
                 *pathway_flags("torch-eager", "torch-torchscript", "torch-onnx")])
    assert code == 0  # nothing was required
    report = json.loads((out / "matrix.json").read_text())
    rows = {r["pathway"]: r for r in report["results"]}
    assert rows["torch-torchscript"]["status"] == "export failed"
    assert rows["torch-torchscript"]["message"].startswith("timed out after 30 s in the export step")
    assert rows["torch-eager"]["status"] == "ok" and rows["torch-onnx"]["status"] == "ok"  # after the hang, in a new worker
    assert report["specs"][0]["workers"] == 2


def test_a_hung_upstream_onnx_export_fails_its_dependents_without_looping(tmp_path, workdir):
    """torch-tflite needs torch-onnx's file, which is not asked for itself: when building it hangs, the next worker
    does not build it again, and torch-tflite is reported as failed because of it."""
    spec = spec_file(tmp_path, "tiny-export-hang", "pytorch", "export_hanging_model")
    out = tmp_path / "report"
    code = main(["matrix", str(spec), "--workdir", str(workdir), "--out", str(out), "--timeout", "30", "--no-latency",
                 *pathway_flags("torch-eager", "torch-tflite")])
    assert code == 0
    report = json.loads((out / "matrix.json").read_text())
    rows = {r["pathway"]: r for r in report["results"]}
    assert set(rows) == {"torch-eager", "torch-tflite"} and rows["torch-eager"]["status"] == "ok"
    assert rows["torch-tflite"]["status"] == "export failed"
    assert rows["torch-tflite"]["message"].startswith("needs torch-onnx's ONNX file, and torch-onnx failed")
    assert report["specs"][0]["workers"] == 2


# ---- --register, then a live gateway loads the variants without a restart ----

TOKEN = "test-token"
MANAGE = {"Authorization": f"Bearer {TOKEN}"}
# A factory module of the user's, beside the spec: --register carries it into the eager variant's version folder.
STANDALONE = """
import torch


class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(64, 10)

    def forward(self, x):
        return self.linear(x.flatten(1))


def build():
    torch.manual_seed(0)
    return Tiny()
"""


def test_register_then_the_gateway_loads_and_serves_the_new_variants(tmp_path, workdir, scratch_repository):
    import tritonclient.http as triton

    (tmp_path / "tiny_linear_factory.py").write_text(STANDALONE)
    spec = spec_file(tmp_path, "tiny-linear", "pytorch", "linear_model", '["torch-onnx"]')
    spec.write_text(spec.read_text().replace("tests.test_matrix:linear_model", "tiny_linear_factory:build"))
    with LiveGateway(scratch_repository, model_control_mode="explicit", management_token=TOKEN) as gateway:
        before = set(scratch_repository.names())
        code = main(["matrix", str(spec), "--workdir", str(workdir), "--out", str(tmp_path / "report"), "--register",
                     "--repository", str(scratch_repository.root), "--no-latency",
                     *pathway_flags("torch-eager", "torch-onnx", "torch-torchscript")])
        assert code == 0
        added = set(scratch_repository.names()) - before
        assert added == {"tiny-linear-torch-eager", "tiny-linear-torch-onnx", "tiny-linear-torch-torchscript"}
        for name in sorted(added):
            config = scratch_repository.config(name)
            assert config.model == "tiny-linear" and config.latest().parity.passed
            assert all(len(f.sha256) == 64 for f in config.latest().files)
        eager = scratch_repository.config("tiny-linear-torch-eager")  # the factory travelled with the weights
        assert eager.entry == "tiny_linear_factory:build"
        assert "tiny_linear_factory.py" in {f.path for f in eager.latest().files}
        client = triton.InferenceServerClient(gateway.address)
        assert not client.is_model_ready("tiny-linear-torch-onnx")  # not loaded until asked
        http = httpx.Client(base_url=gateway.url, timeout=60)
        for name in sorted(added):
            assert http.post(f"/v2/repository/models/{name}/load", headers=MANAGE).status_code == 200
        index = {m["name"]: m["state"] for m in http.post("/v2/repository/index", json={}).json()}
        assert all(index[name] == "READY" for name in added)
        x = samples()[0][:3]
        expected = linear_model().eval()(torch.from_numpy(x)).detach().numpy()
        tensor = triton.InferInput("image", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x, binary_data=True)
        for name in sorted(added):
            got = client.infer(name, [tensor]).as_numpy("logits")
            np.testing.assert_allclose(got, expected, atol=1e-4, rtol=1e-3)
        compared = http.post("/v1/compare", json={"image": x[0].tolist(), "variants": sorted(added)}).json()
        rows = {v["name"]: v for v in compared["variants"]}
        assert set(rows) == added and rows["tiny-linear-torch-onnx"]["reference"] == "tiny-linear-torch-eager"
        assert http.post("/v2/repository/models/tiny-linear-torch-onnx/unload", headers=MANAGE).status_code == 200
        assert not client.is_model_ready("tiny-linear-torch-onnx")


def test_register_refuses_an_eager_factory_that_cannot_travel(tmp_path, workdir, scratch_repository, capsys):
    """tests/test_matrix.py imports relatively: copied alone into a version folder it could not be imported."""
    spec = spec_file(tmp_path, "tiny-linear", "pytorch", "linear_model")
    before = set(scratch_repository.names())
    code = main(["matrix", str(spec), "--workdir", str(workdir), "--out", str(tmp_path / "report"), "--register",
                 "--repository", str(scratch_repository.root), "--no-latency", *pathway_flags("torch-eager")])
    err = capsys.readouterr().err
    assert code == 1 and "'tiny-linear-torch-eager' carries its factory tests.test_matrix:linear_model" in err
    assert "imports relatively" in err and set(scratch_repository.names()) == before


def test_register_refuses_a_name_that_serves_another_model(tmp_path, workdir, scratch_repository, capsys):
    spec = spec_file(tmp_path, "tiny-linear", "pytorch", "linear_model")
    spec.write_text(spec.read_text().replace('required = []', 'required = []\nvariant_prefix = ""'))
    before = scratch_repository.config("torch-eager").versions
    code = main(["matrix", str(spec), "--workdir", str(workdir), "--out", str(tmp_path / "report"), "--register",
                 "--repository", str(scratch_repository.root), "--no-latency", *pathway_flags("torch-eager")])
    err = capsys.readouterr().err
    assert code == 1 and "--register: 'torch-eager' in " in err and "serves model 'digits-cnn', not 'tiny-linear'" in err
    assert scratch_repository.config("torch-eager").versions == before  # untouched


# ---- bad specs: one line, exit 2, nothing written ----

BAD = [
    ("not TOML", lambda t: "name = [", r"not valid TOML"),
    ("factory not importable", lambda t: t.replace("tests.test_matrix:linear_model", "no_such_module:build"),
     r"factory: cannot import 'no_such_module'"),
    ("signature mismatch", lambda t: t.replace("shape = [-1, 10]", "shape = [-1, 12]"),
     r"outputs: 'logits' comes out as \[-1, 10\], the spec declares \[-1, 12\]"),
    ("samples of the wrong shape", lambda t: t.replace("shape = [-1, 8, 8]", "shape = [-1, 8, 9]"),
     r"samples: input 'image' has shape \[8, 8, 8\], expected \[N >= 2, 8, 9\]"),
    ("unknown required pathway", lambda t: t.replace('["torch-onnx"]', '["torch-onnnx"]'), r"required: .*unknown pathway"),
]


@pytest.mark.parametrize("case,edit,message", BAD, ids=[b[0] for b in BAD])
def test_a_bad_spec_exits_2_with_one_line_and_writes_nothing(case, edit, message, tmp_path, workdir, capsys):
    import re

    spec = spec_file(tmp_path, "tiny-linear", "pytorch", "linear_model", '["torch-onnx"]')
    spec.write_text(edit(spec.read_text()))
    repository = tmp_path / "repository"
    shutil.rmtree(repository, ignore_errors=True)
    out = tmp_path / "report"
    code = main(["matrix", str(spec), "--workdir", str(workdir), "--out", str(out), "--register",
                 "--repository", str(repository)])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and re.search(message, err), err
    assert err.startswith("crossdeploy: error: ") and str(spec) in err
    assert not out.exists() and not repository.exists()
    assert ModelRepository(repository).exists() is False

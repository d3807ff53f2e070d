"""Known remedies in `crossdeploy matrix`, on the recurrent examples of docs/examples/recurrent (a Keras GRU and a
PyTorch LSTM, trained here for a few epochs): the remedies rescue what they rescue, each variant's config records
its remedy, and a pathway no remedy fixes keeps its own failure with every attempt listed."""

from __future__ import annotations

import importlib.util
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from crossdeploy.cli import main
from crossdeploy.export.remedies import remedies_for
from crossdeploy.repository import ModelRepository, VariantConfig

EXAMPLES = Path(__file__).parents[1] / "docs" / "examples" / "recurrent"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A workdir with both recurrent models trained (3 epochs: parity, not accuracy, is what is checked)."""
    spec = importlib.util.spec_from_file_location("recurrent_models_train", EXAMPLES / "recurrent_models.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    workdir = tmp_path_factory.mktemp("recurrent")
    module.train(workdir, epochs=3)
    return workdir


def _matrix(trained, tmp_path, spec: str, *pathways: str) -> tuple[int, dict, ModelRepository]:
    out, repository = tmp_path / "report", tmp_path / "repository"
    flags = [arg for name in pathways for arg in ("--pathway", name)]
    code = main(["matrix", str(EXAMPLES / spec), "--workdir", str(trained), "--out", str(out), "--no-latency",
                 "--junit", str(out / "junit.xml"), "--register", "--repository", str(repository), *flags])
    rows = {r["pathway"]: r for r in json.loads((out / "matrix.json").read_text())["results"]}
    return code, rows, ModelRepository(repository)


def test_gru_tflite_and_torchscript_pass_with_the_rnn_unrolled_and_their_configs_say_so(trained, tmp_path):
    code, rows, repository = _matrix(trained, tmp_path, "gru.toml", "keras-tflite", "keras-onnx", "keras-torchscript")
    assert code == 0  # keras-tflite is required; passing with a remedy is passing
    assert rows["keras-onnx"]["status"] == "ok" and rows["keras-onnx"]["remedy"] is None  # tf2onnx handles the GRU
    tflite = rows["keras-tflite"]
    assert tflite["status"] == "ok with remedy" and tflite["remedy"] == "keras-unroll", tflite
    assert "TensorListReserve" in tflite["remedy_replaces"]  # the converter's failure without it
    assert tflite["max_abs"] < 1e-4 and tflite["agreement"] == 1.0 and "unrolled" in tflite["remedy_cost"]
    torchscript = rows["keras-torchscript"]
    assert torchscript["status"] == "ok with remedy" and torchscript["remedy"] == "keras-unroll"
    # another opset was tried first, and onnx2torch still had no GRU converter
    first, last = torchscript["remedy_attempts"]
    assert first["remedy"] == "opset-15" and first["status"] == "conversion failed" and "GRU" in first["message"]
    assert last == {"remedy": "keras-unroll", "status": "ok", "step": "parity", "message": ""}
    # its own artifact never existed, so the TFLite file's size is set against tf2onnx's file of the same weights
    assert "for keras-onnx (ONNX, the same weights, no remedy" in tflite["remedy_cost"]
    assert "batch came out fixed at 1" in torchscript["remedy_cost"] and torchscript["batch"] == "fixed 1, rows split"
    # the served variants record it: the pathway's own options, or those of the ONNX file it converts
    config = repository.config("digits-gru-keras-tflite")
    assert config.remedy.name == "keras-unroll" and config.remedy.options == {"unroll": True}
    assert "TensorListReserve" in config.remedy.replaces
    config = repository.config("digits-gru-keras-torchscript")
    assert config.remedy.upstream == {"unroll": True} and config.remedy.options == {}
    assert repository.config("digits-gru-keras-onnx").remedy is None
    markdown = (tmp_path / "report" / "matrix.md").read_text()
    assert "| `keras-tflite` | ok with `keras-unroll` |" in markdown and "serving cost:" in markdown
    case = ET.parse(tmp_path / "report" / "junit.xml").getroot().find(".//testcase[@name='keras-tflite']")
    assert case.find("failure") is None and case.find("properties/property[@name='remedy']").get("value") == "keras-unroll"


def test_lstm_tflite_through_onnx2tf_needs_both_flags_and_the_flex_attempt_is_listed(trained, tmp_path):
    code, rows, repository = _matrix(trained, tmp_path, "lstm.toml", "torch-tflite")
    assert code == 0
    row = rows["torch-tflite"]
    assert row["status"] == "ok with remedy" and row["remedy"] == "onnx2tf-nuo-eru", row
    assert "initial_state" in row["remedy_replaces"] and row["max_abs"] < 1e-4 and row["batch"] == "dynamic"
    # without onnxsim onnx2tf converts, but the LSTM stays a TensorList loop: Flex ops no interpreter here links
    first = row["remedy_attempts"][0]
    assert first["remedy"] == "onnx2tf-nuo" and first["status"] == "load failed", first
    assert "needs the Flex delegate" in first["message"] and "FlexTensorList" in first["message"]
    config = repository.config("digits-lstm-torch-tflite")
    assert config.remedy.options == {"onnx2tf": {"not_use_onnxsim": True, "enable_rnn_unroll": True}}
    assert "enable_rnn_unroll=True" in config.toolchain[2].detail


def test_a_failure_no_remedy_fixes_keeps_its_message_and_lists_the_attempts(trained, tmp_path, capsys):
    out = tmp_path / "report"
    common = ["matrix", str(EXAMPLES / "gru.toml"), "--workdir", str(trained), "--out", str(out), "--no-latency",
              "--pathway", "keras-tflite"]
    assert main([*common, "--remedy", "tflite-flex"]) == 1  # the required keras-tflite still fails
    (row,) = json.loads((out / "matrix.json").read_text())["results"]
    assert row["status"] == "conversion failed" and row["remedy"] is None and "TensorListReserve" in row["message"]
    (tried,) = row["remedy_attempts"]
    assert tried["remedy"] == "tflite-flex" and tried["status"] == "load failed"  # it converts; nothing here runs it
    assert "FlexTensorListReserve" in tried["message"]
    assert "remedies tried, none passed: tflite-flex → load failed" in (out / "matrix.md").read_text()
    capsys.readouterr()
    assert main([*common, "--remedy", "no-such-remedy"]) != 0
    assert "unknown remedy(ies) no-such-remedy; known: " in capsys.readouterr().err


def test_recurrent_remedies_are_offered_only_to_recurrent_models():
    from crossdeploy.models import keras_cnn, torch_cnn

    spec = importlib.util.spec_from_file_location("recurrent_models_offer", EXAMPLES / "recurrent_models.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    names = lambda pathway, model, dynamic: [r.name for r in remedies_for(pathway, model, dynamic)]  # noqa: E731
    assert names("keras-tflite", module.gru(), True) == ["keras-unroll", "fixed-batch-1", "tflite-flex"]
    assert names("keras-tflite", keras_cnn.build(), False) == ["tflite-flex"]
    assert names("torch-tflite", module.lstm(), True)[:2] == ["onnx2tf-nuo", "onnx2tf-nuo-eru"]
    assert "onnx2tf-nuo-eru" not in names("torch-tflite", torch_cnn.build(), True)
    assert names("keras-tflite", module.gru(), True) and not remedies_for("keras-tflite", module.gru(), True, [])


def test_a_config_written_before_remedies_existed_still_loads():
    text = json.loads((Path(__file__).parent / "testdata" / "config-v0.json").read_text())
    assert "remedy" not in text and VariantConfig.model_validate(text).remedy is None

"""int8 sensitivity on the real torch-onnx-int8 variant: the ranking matches what quantizing each node alone
measurably does, the keep-float curve's ends are the float model and the shipped variant, and the report is whole."""

from __future__ import annotations

import json
import sys
import subprocess

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from PIL import Image

from crossdeploy.errors import CrossdeployError
from crossdeploy.export.int8_report import short
from crossdeploy.export.int8_sensitivity import Quantizer, run_sensitivity, samples_for

VARIANT = "torch-onnx-int8"
LIMIT = 120  # parity samples: enough for every node to show its error, few enough to stay quick


def run(path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def assert_remeasured(top: dict, bottom: dict, quantized_alone, reference: np.ndarray) -> None:
    """Each of the two nodes quantized alone, re-run here: its mean abs error is the report's, and the top's exceeds the bottom's."""
    measured = {}
    for layer in (top, bottom):
        logits = quantized_alone(layer["node"])
        measured[layer["node"]] = float(np.abs(logits.astype(np.float64) - reference).mean())
        assert measured[layer["node"]] == pytest.approx(layer["measure"]["mean_abs"], rel=1e-6)
    assert measured[top["node"]] > measured[bottom["node"]]


def model_file(repository, name: str):
    return repository.version_dir(name, repository.get(name)[1].version) / "model.onnx"


@pytest.fixture(scope="module")
def report(repository, tmp_path_factory):
    out = tmp_path_factory.mktemp("sensitivity") / VARIANT
    folder = run_sensitivity(repository.root, VARIANT, out, limit=LIMIT)
    return folder, json.loads((folder / "sensitivity.json").read_text())


@pytest.fixture(scope="module")
def samples():
    x, _, _ = samples_for("digits-cnn")
    return x[:LIMIT]


def shipped_quantized_nodes(path) -> tuple[set[str], set[str]]:
    """The nodes of a QDQ model that read a dequantized tensor (the ones the quantizer actually quantized), and
    those among them that read dequantized weights (an initializer through DequantizeLinear)."""
    graph = onnx.load(str(path)).graph
    initializers = {i.name for i in graph.initializer}
    dq = [n for n in graph.node if n.op_type == "DequantizeLinear"]
    dequantized = {o for n in dq for o in n.output}
    weights = {o for n in dq if n.input[0] in initializers for o in n.output}
    compute = [n for n in graph.node if n.op_type not in ("QuantizeLinear", "DequantizeLinear")]
    return ({n.name for n in compute if any(i in dequantized for i in n.input)},
            {n.name for n in compute if any(i in weights for i in n.input)})


def test_the_ranking_covers_every_quantized_node_most_sensitive_first(repository, report):
    _, data = report
    ranked = [layer["node"] for layer in data["layers"]]
    assert len(ranked) == len(set(ranked))
    float_nodes = {n.name for n in onnx.load(str(model_file(repository, "torch-onnx"))).graph.node}
    assert set(ranked) <= float_nodes
    shipped, weighted = shipped_quantized_nodes(model_file(repository, VARIANT))
    assert weighted and weighted <= shipped <= set(ranked), shipped - set(ranked)
    # a node with weights takes Q/DQ when quantized alone and shows an error; a data-movement node (MaxPool,
    # Reshape) is quantized only behind a quantized producer, so alone it may change nothing
    alone = {layer["node"]: layer for layer in data["layers"]}
    assert all(alone[name]["quantized"] and alone[name]["measure"]["max_abs"] > 0 for name in weighted)
    assert all(layer["measure"]["max_abs"] == 0 for layer in data["layers"] if not layer["quantized"])
    errors = [layer["measure"]["mean_abs"] for layer in data["layers"]]
    assert errors == sorted(errors, reverse=True)


def test_the_top_ranked_node_alone_costs_more_than_the_bottom_one(repository, report, samples, tmp_path):
    """Re-measured here, outside the report: quantize each of the two alone and compare with the float model."""
    _, data = report
    effective = [layer for layer in data["layers"] if layer["quantized"]]
    top, bottom = effective[0], effective[-1]
    assert top["node"] != bottom["node"]
    config = repository.config(VARIANT)
    _, _, calibration = samples_for(config.model)
    quantizer = Quantizer(model_file(repository, "torch-onnx"), config, calibration, tmp_path)
    reference = run(model_file(repository, "torch-onnx"), samples)
    assert_remeasured(top, bottom, lambda node: run(quantizer.quantize(nodes_to_quantize=[node]) / "model.onnx", samples), reference)


def test_keeping_every_node_float_gives_the_float_model(repository, samples, tmp_path):
    config = repository.config(VARIANT)
    _, _, calibration = samples_for(config.model)
    every = [name for name, _ in Quantizer(model_file(repository, "torch-onnx"), config, calibration,
                                           tmp_path / "q").quantizable()]
    folder = run_sensitivity(repository.root, VARIANT, tmp_path / "out", keep_float=[len(every)], limit=LIMIT)
    point = json.loads((folder / "sensitivity.json").read_text())["curve"][0]
    assert point["keep_float"] == len(every) and sorted(point["kept"]) == sorted(every)
    logits = run(folder / "models" / f"keep_float_{len(every)}" / "model.onnx", samples)
    np.testing.assert_allclose(logits, run(model_file(repository, "torch-onnx"), samples), rtol=0, atol=1e-5)
    assert point["measure"]["agreement"] == 1.0


def test_keeping_nothing_float_reproduces_the_shipped_variant(repository, report, samples):
    folder, data = report
    assert data["curve"][0]["keep_float"] == 0
    logits = run(folder / "models" / "keep_float_0" / "model.onnx", samples)
    np.testing.assert_array_equal(logits, run(model_file(repository, VARIANT), samples))
    assert data["requantized_vs_shipped_max_abs"] == 0.0
    assert data["curve"][0]["measure"] == data["shipped"]


def test_the_curve_grows_in_size_and_ends_at_float_parity(report):
    _, data = report
    curve = data["curve"]
    counts = [p["keep_float"] for p in curve]
    assert counts[0] == 0 and counts == sorted(counts) and len(counts) >= 3
    sizes = [p["measure"]["size"] for p in curve]
    assert sizes == sorted(sizes), sizes  # a node kept float keeps its fp32 weights instead of int8 ones
    assert sizes[-1] > sizes[0]
    last = curve[-1]["measure"]
    assert last["max_abs"] < 1e-5 and last["accuracy"] == data["float_accuracy"]


def test_the_report_files_are_written_and_the_plots_are_images(report):
    folder, data = report
    for name in ("sensitivity.json", "sensitivity.md", "sensitivity.png", "keep_float.png"):
        assert (folder / name).stat().st_size > 0, name
    text = (folder / "sensitivity.md").read_text()
    assert all(f"`{short(layer['node'])}`" in text for layer in data["layers"])
    for name in ("sensitivity.png", "keep_float.png"):
        with Image.open(folder / name) as image:
            assert image.format == "PNG" and min(image.size) > 200
            assert len(set(image.convert("L").getdata())) > 10  # something was drawn


def test_a_float_variant_is_refused_in_one_line(repository, tmp_path):
    with pytest.raises(CrossdeployError, match="int8 ONNX or TFLite variant"):
        run_sensitivity(repository.root, "torch-onnx", tmp_path)
    with pytest.raises(CrossdeployError, match="quantizable nodes"):
        run_sensitivity(repository.root, VARIANT, tmp_path, keep_float=[999])


def test_the_cli_names_an_unknown_variant_in_one_line(repository, tmp_path):
    done = subprocess.run([sys.executable, "-m", "crossdeploy.cli", "sensitivity", "no-such-variant",
                           "--repository", str(repository.root), "--workdir", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "no-such-variant" in lines[0], done.stderr


# TFLite PTQ: the converter's own selective quantization (its debugger's deny-list), same checks.
TFLITE = "keras-tflite-int8"
WEIGHTED = {"CONV_2D", "FULLY_CONNECTED", "DEPTHWISE_CONV_2D"}


def run_tflite(path, x: np.ndarray) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    interpreter.resize_tensor_input(interpreter.get_input_details()[0]["index"], list(x.shape), strict=True)
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"]).copy()


def tflite_file(repository, name: str):
    return repository.version_dir(name, repository.get(name)[1].version) / "model.tflite"


@pytest.fixture(scope="module")
def tflite_report(repository, tmp_path_factory):
    out = tmp_path_factory.mktemp("sensitivity") / TFLITE
    folder = run_sensitivity(repository.root, TFLITE, out, limit=LIMIT)
    return folder, json.loads((folder / "sensitivity.json").read_text())


def test_tflite_ranking_covers_every_quantized_op_and_is_remeasurable(repository, tflite_report, samples, tmp_path):
    from collections import Counter

    from ai_edge_litert.interpreter import Interpreter

    from crossdeploy.export.int8_tflite import TfliteQuantizer

    _, data = tflite_report
    shipped = Interpreter(model_path=str(tflite_file(repository, TFLITE)))
    tensors = {t["index"]: t for t in shipped.get_tensor_details()}
    quantized_ops = Counter(op["op_name"] for op in shipped._get_ops_details()
                            if op["op_name"] not in ("QUANTIZE", "DEQUANTIZE")
                            and any(tensors[i]["dtype"] == np.int8 for i in op["outputs"]))
    assert Counter(layer["op_type"] for layer in data["layers"]) == quantized_ops
    top, bottom = data["layers"][0], data["layers"][-1]
    config = repository.config(TFLITE)
    quantizer = TfliteQuantizer(repository, config, samples_for(config.model)[2], tmp_path)
    reference = run_tflite(tflite_file(repository, "keras-tflite"), samples)
    assert_remeasured(top, bottom, lambda node: run_tflite(quantizer.quantize(nodes_to_quantize=[node]) / "model.tflite", samples), reference)


def test_tflite_curve_ends_are_the_shipped_and_the_float_conversion(repository, tflite_report, samples):
    folder, data = tflite_report
    first, last = data["curve"][0], data["curve"][-1]
    assert first["keep_float"] == 0 and last["keep_float"] == len(data["layers"])
    assert (folder / "models" / "keep_float_0" / "model.tflite").read_bytes() == \
        tflite_file(repository, TFLITE).read_bytes()
    logits = run_tflite(folder / "models" / f"keep_float_{last['keep_float']}" / "model.tflite", samples)
    np.testing.assert_allclose(logits, run_tflite(tflite_file(repository, "keras-tflite"), samples), rtol=0, atol=1e-5)
    # a weighted op kept float keeps fp32 weights: the file grows; other steps only add or drop Q/DQ ops
    for before, after in zip(data["curve"], data["curve"][1:]):
        added = {layer["op_type"] for layer in data["layers"]
                 if layer["node"] in after["kept"] and layer["node"] not in before["kept"]}
        change = after["measure"]["size"] - before["measure"]["size"]
        assert change > 0 if added & WEIGHTED else abs(change) < 1024, (before["keep_float"], after["keep_float"])

"""`crossdeploy diverge` on real artifacts: a correct torch -> ONNX chain reports no divergence and aligns the
models' modules with the ONNX nodes; a weight planted wrong in one ONNX node is found exactly at that node, on
every chain built on that file, with nothing before it beyond the tolerance."""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import pytest

from crossdeploy.errors import CrossdeployError
from crossdeploy.export.diverge import run_diverge
from crossdeploy.repository import ModelRepository, record_files

CNN_ONNX = "torch-onnx"
TRANSFORMER_ONNX = "digits-transformer-torch-onnx"
TRANSFORMER_TFLITE = "digits-transformer-torch-tflite"
TRANSFORMER_INT8 = "digits-transformer-torch-onnx-int8"
TRANSFORMER_SCRIPT = "digits-transformer-torch-torchscript"
TRANSFORMER_EPOCHS = 3


def report(folder) -> dict:
    return json.loads((folder / "diverge.json").read_text())


def first_hop(folder) -> dict:
    hop = report(folder)["hops"][0]
    assert hop["name"] == "torch -> ONNX"
    return hop


def assert_real_report(folder) -> None:
    import matplotlib.image

    assert (folder / "diverge.md").read_text().startswith("# Where ")
    png = folder / "diverge.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = matplotlib.image.imread(png)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100 and image.std() > 0  # not blank


def test_a_correct_chain_reports_no_divergence_and_aligns_the_cnn(repository, tmp_path):
    folder = run_diverge(repository.root, CNN_ONNX, tmp_path / "out", samples=32)
    hop = first_hop(folder)
    assert hop["status"] == "within tolerance" and hop["first_divergence"] is None
    assert all(p["breaches"] == 0 and p["tolerance_ratio"] <= 1 for p in hop["points"])
    # 11 leaf modules; the exporter folds each Conv2d into the BatchNorm after it, so those two have no node
    matched = {p["module"] for p in hop["points"]}
    assert report(folder)["leaf_modules"] == 11 and len(matched) == 9
    assert {"features.1", "features.2", "features.4", "features.6", "classifier.1", "classifier.3"} <= matched
    assert all(p["matched_by"] == "name" for p in hop["points"])
    assert [u["type"] for u in hop["unmatched"]] == ["Conv2d", "Conv2d"]
    assert all("fused" in u["reason"] for u in hop["unmatched"])
    assert_real_report(folder)


def test_a_correct_chain_through_onnx2tf_to_tflite_reports_no_divergence_on_either_hop(repository, tmp_path):
    hops = report(run_diverge(repository.root, "torch-tflite", tmp_path / "out", samples=32))["hops"]
    assert [h["name"] for h in hops] == ["torch -> ONNX", "ONNX -> TFLite (onnx2tf)"]
    assert all(h["status"] == "within tolerance" for h in hops)
    tflite = hops[1]
    assert tflite["labels"] == ["ONNX node", "TFLite op"]
    # channels-last undone: the convolutions' outputs are compared as NCHW
    assert any(p["layout"] == "NHWC->NCHW" and p["op_type"] == "CONV_2D" for p in tflite["points"])
    matched = {p["module"] for p in tflite["points"]}
    assert {"node_relu", "node_relu_1", "node_max_pool2d", "node_relu_2"} <= matched and len(matched) >= 7
    # TFLite fuses each Conv/Gemm with the Relu after it: the Relu holds the fused op's output
    assert {u["type"] for u in tflite["unmatched"]} <= {"Conv", "Gemm"} and all("fused" in u["reason"] for u in tflite["unmatched"])


def perturb(repository: ModelRepository, variant: str, op_type: str, which: int, scale: float = 0.05) -> str:
    """Adds a visible error to one element of the weight of the `which`-th `op_type` node of the variant's ONNX
    file, re-records the file's sha256 in the config, and returns the node's name."""
    config, record = repository.get(variant)
    folder = repository.version_dir(variant, record.version)
    model = onnx.load(str(folder / "model.onnx"))
    node = [n for n in model.graph.node if n.op_type == op_type][which]
    weight = next(t for t in model.graph.initializer if t.name == node.input[1])
    values = onnx.numpy_helper.to_array(weight).copy()
    values.flat[0] += scale * float(np.abs(values).max())
    weight.CopyFrom(onnx.numpy_helper.from_array(values, weight.name))
    onnx.save(model, str(folder / "model.onnx"))
    record.files = record_files(folder)
    repository.write_config(config)
    return node.name


def first_consumer(repository: ModelRepository, variant: str, name: str) -> str:
    model = onnx.load(str(repository.version_dir(variant, repository.get(variant)[1].version) / "model.onnx"))
    output = next(n for n in model.graph.node if n.name == name).output[0]
    return next(n.name for n in model.graph.node if output in n.input)


@pytest.mark.parametrize(("op_type", "which"), [("Conv", 1), ("Gemm", 0)])
def test_a_weight_planted_wrong_is_found_at_its_node_on_every_chain_through_it(scratch_repository, tmp_path,
                                                                               op_type, which):
    planted = perturb(scratch_repository, CNN_ONNX, op_type, which)
    for variant in (CNN_ONNX, "torch-tflite"):  # torch-tflite was converted from the same ONNX file
        hop = first_hop(run_diverge(scratch_repository.root, variant, tmp_path / variant, samples=32))
        assert hop["status"] == "diverges", variant
        first = hop["points"][hop["first_divergence"]]
        assert first["node"] == planted and first["op_type"] == op_type, (variant, first)
        before = hop["points"][:hop["first_divergence"]]
        assert before and all(p["breaches"] == 0 for p in before)
        # the op itself went wrong: what flows into it is within tolerance, only its weight is not compared
        data = [i for i in first["inputs"] if "tolerance_ratio" in i]
        assert data and all(i["tolerance_ratio"] <= 1 for i in data)
        assert any(i["is"] == "a weight (initializer)" for i in first["inputs"])
    # onnx2tf converted the file before the weight moved: the TFLite hop parts from the ONNX at the same node,
    # or at its Relu when TFLite fused the two into one op
    tflite = report(tmp_path / "torch-tflite")["hops"][1]
    assert tflite["status"] == "diverges"
    first = tflite["points"][tflite["first_divergence"]]
    assert first["module"] in {planted, first_consumer(scratch_repository, CNN_ONNX, planted)}, first
    assert all(p["breaches"] == 0 for p in tflite["points"][:tflite["first_divergence"]])
    text = (tmp_path / "torch-tflite" / "diverge.md").read_text()
    assert "first divergence: torch -> ONNX at " in text and planted in text
    assert "first divergence: ONNX -> TFLite (onnx2tf) at " in text
    assert_real_report(tmp_path / "torch-tflite")


@pytest.fixture(scope="module")
def transformer_repository(repository, tmp_path_factory) -> ModelRepository:
    """The transformer's eager and ONNX variants: the repository's if it has them, else exported from the
    session's trained weights (the pipeline's repository holds the CNN only)."""
    if {TRANSFORMER_ONNX, TRANSFORMER_TFLITE, TRANSFORMER_INT8, TRANSFORMER_SCRIPT} <= set(repository.names()):
        return repository
    from crossdeploy.export.exporting import BUILTIN_SPECS, export_all, raise_failures
    from crossdeploy.export.modelspec import load_spec
    from crossdeploy.models.train import BUILTINS, train_builtin

    # what is under test is the alignment, not the accuracy: a few epochs of the PyTorch transformer alone, rather
    # than the session's 30 of all four built-in models
    work = tmp_path_factory.mktemp("transformer-work")
    train_builtin(next(b for b in BUILTINS if b.model == "digits-transformer" and b.framework == "pytorch"),
                  work / "trained", TRANSFORMER_EPOCHS)
    built = ModelRepository(tmp_path_factory.mktemp("transformer") / "model_repository")
    spec = load_spec(BUILTIN_SPECS / "digits-transformer-pytorch.toml", work)
    raise_failures(export_all(built, [spec], ["torch-eager", "torch-onnx", "torch-tflite", "torch-onnx-int8",
                                              "torch-torchscript"]))
    return built


def test_the_transformer_aligns_every_module_that_computes(transformer_repository, tmp_path):
    folder = run_diverge(transformer_repository.root, TRANSFORMER_ONNX, tmp_path / "out", samples=32)
    hop = first_hop(folder)
    assert hop["status"] == "within tolerance"
    matched = {p["module"]: p for p in hop["points"]}
    # attention computes through its out_proj's weights, never its forward: it is matched as one module
    assert {"embed", "encoder.layers.0.self_attn", "encoder.layers.1.linear2", "norm", "head"} <= set(matched)
    assert matched["encoder.layers.0.self_attn"]["module_type"] == "MultiheadAttention"
    # eval-mode Dropout returns its input and gets no node; every other module is matched
    assert hop["unmatched"] and all(u["type"] == "Dropout" for u in hop["unmatched"])
    assert len(matched) + len(hop["unmatched"]) == report(folder)["leaf_modules"]


def test_a_correct_transformer_chain_to_tflite_reports_no_false_divergence(transformer_repository, tmp_path):
    """onnx2tf rewrites attention's layout and keeps no ONNX names: matched by position alone, a point that parts
    while the output agrees is declared unmatchable, not a divergence (the variant passes parity)."""
    torch_hop, tflite_hop = report(run_diverge(transformer_repository.root, TRANSFORMER_TFLITE, tmp_path / "out",
                                               samples=16))["hops"]
    assert torch_hop["status"] == "within tolerance"
    assert tflite_hop["first_divergence"] is None and tflite_hop["status"] in ("within tolerance", "cannot be matched")
    assert tflite_hop["points"][-1]["breaches"] == 0 and tflite_hop["points"][-1]["op_type"] == "FULLY_CONNECTED"
    if tflite_hop["status"] == "cannot be matched":
        assert "cannot be trusted" in tflite_hop["reason"]


def test_the_transformers_traced_encoder_layers_stand_for_the_leaves_the_trace_never_called(transformer_repository, tmp_path):
    """The encoder layer's fast path computes through its submodules' weights: torch.jit.trace never calls them,
    so they have no scripted forward, and the layer's own scripted forward is compared in their place."""
    [hop] = report(run_diverge(transformer_repository.root, TRANSFORMER_SCRIPT, tmp_path / "out", samples=16))["hops"]
    assert hop["status"] == "within tolerance"
    matched = {p["module"]: p["module_type"] for p in hop["points"]}
    assert matched == {"embed": "Linear", "encoder.layers.0": "TransformerEncoderLayer",
                       "encoder.layers.1": "TransformerEncoderLayer", "norm": "LayerNorm", "head": "Linear"}
    inside = {u["module"]: u["reason"] for u in hop["unmatched"] if u["type"] != "Dropout"}
    assert inside and all(reason.endswith(f"compared as part of {module.rsplit('.', 1)[0]}") for module, reason in inside.items())


def test_the_transformers_int8_file_is_within_its_bounds_at_every_tensor(transformer_repository, tmp_path):
    """Erf's and Softmax's outputs are finely quantized, their inputs coarsely: held to their own step alone they
    would leave the bound on quantization error the inputs carried in."""
    torch_hop, int8 = report(run_diverge(transformer_repository.root, TRANSFORMER_INT8, tmp_path / "out", samples=64))["hops"]
    assert torch_hop["status"] == int8["status"] == "within tolerance"
    assert {"Erf", "Softmax"} <= {p["op_type"] for p in int8["points"]} and all(p["atol"] for p in int8["points"][1:])


def test_the_first_divergence_is_the_earliest_not_the_worst(scratch_repository, tmp_path):
    early = perturb(scratch_repository, CNN_ONNX, "Conv", 0, scale=0.01)
    late = perturb(scratch_repository, CNN_ONNX, "Gemm", 1, scale=2.0)
    hop = first_hop(run_diverge(scratch_repository.root, CNN_ONNX, tmp_path / "out", samples=32))
    by_node = {p["node"]: p for p in hop["points"]}
    assert by_node[late]["tolerance_ratio"] > by_node[early]["tolerance_ratio"] > 1  # the later fault is the worse
    assert hop["points"][hop["first_divergence"]]["node"] == early


def strip_names(repository: ModelRepository, variant: str) -> None:
    """The ONNX file as an exporter that keeps no module paths would write it: no metadata, anonymous nodes."""
    config, record = repository.get(variant)
    folder = repository.version_dir(variant, record.version)
    model = onnx.load(str(folder / "model.onnx"))
    for index, node in enumerate(model.graph.node):
        del node.metadata_props[:]
        node.name = f"n{index}"
    onnx.save(model, str(folder / "model.onnx"))
    record.files = record_files(folder)
    repository.write_config(config)


@pytest.mark.parametrize("variant", [CNN_ONNX, TRANSFORMER_ONNX])
def test_without_the_exporters_names_modules_are_matched_by_order_shape_and_op(request, tmp_path, variant):
    source = request.getfixturevalue("repository" if variant == CNN_ONNX else "transformer_repository")
    named = {p["module"]: p["node"] for p in first_hop(run_diverge(source.root, variant, tmp_path / "named", samples=16))["points"]}
    copy = ModelRepository(tmp_path / "model_repository")
    shutil.copytree(source.root, copy.root, ignore=shutil.ignore_patterns(".staging"))
    strip_names(copy, variant)
    hop = first_hop(run_diverge(copy.root, variant, tmp_path / "out", samples=16))
    assert hop["status"] == "within tolerance"  # a residual Add or a step inside GELU taken for a module would not be
    assert all(p["matched_by"] == "order+shape" for p in hop["points"])
    # node names are gone, positions are not: the same nodes as the names chose (n<position> = the named node's)
    nodes = [n.name for n in onnx.load(str(source.version_dir(variant, source.get(variant)[1].version) / "model.onnx")).graph.node]
    by_order = {p["module"]: nodes[int(p["node"][1:])] for p in hop["points"]}
    assert by_order == named


def test_a_reference_variant_or_an_unknown_one_is_refused_in_one_line(repository, tmp_path):
    for reference in ("torch-eager", "keras-eager"):
        with pytest.raises(CrossdeployError, match=rf"{reference}: diverge follows a variant's chain from its eager reference"):
            run_diverge(repository.root, reference, tmp_path / "out")
    with pytest.raises(CrossdeployError, match="'no-such' is not in the repository"):
        run_diverge(repository.root, "no-such", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_given_inputs_that_do_not_fit_the_signature_are_one_line_before_anything_runs(repository, tmp_path, capsys):
    from crossdeploy.cli import main

    np.save(tmp_path / "bad.npy", np.zeros((1, 5, 5), np.float32))
    assert main(["diverge", "torch-export", "--repository", str(repository.root), "--workdir", str(tmp_path),
                 "--inputs", str(tmp_path / "bad.npy"), "--out", str(tmp_path / "out")]) == 1
    error = capsys.readouterr().err.strip()
    assert error.startswith("crossdeploy: error: torch-export: inputs shaped [1, 5, 5] do not fit its input 'image' [-1, 8, 8]")
    assert len(error.splitlines()) == 1 and not (tmp_path / "out").exists()


def test_a_variant_converted_from_a_remedied_onnx_file_is_not_followed_through_the_unremedied_one(scratch_repository, tmp_path):
    """Its converter read an ONNX file the repository does not hold: matching it against torch-onnx would be wrong."""
    path = scratch_repository.root / "torch-tflite" / "config.json"
    config = json.loads(path.read_text())
    config["remedy"] = {"name": "opset-17", "upstream": {"opset": 17}, "cost": "none", "replaces": "conversion failed: …"}
    path.write_text(json.dumps(config))
    with pytest.raises(CrossdeployError, match="re-exported with the remedy opset-17, which the repository does not hold"):
        run_diverge(scratch_repository.root, "torch-tflite", tmp_path / "out")

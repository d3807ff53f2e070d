"""`crossdeploy diverge` on the Keras chains (Keras -> tf2onnx, then onnx2torch): the correct keras-onnx file
aligns every Keras layer that computes with its ONNX node, and every ONNX node with its onnx2torch module, and
reports no divergence; a weight planted wrong in one ONNX initializer is found at the node that uses it, on both
chains built on that file and on both hops."""

from __future__ import annotations

import json

import onnx
import pytest

from crossdeploy.export.diverge import run_diverge
from crossdeploy.repository import ModelRepository, record_files

from .test_diverge import assert_real_report, perturb


def hops(folder) -> list[dict]:
    return json.loads((folder / "diverge.json").read_text())["hops"]


def test_the_correct_keras_onnx_chain_reports_no_divergence_and_aligns_every_layer_by_name(repository, tmp_path):
    folder = run_diverge(repository.root, "keras-onnx", tmp_path / "out", samples=32)
    [hop] = hops(folder)
    assert hop["name"] == "keras -> ONNX" and hop["labels"] == ["Keras layer", "ONNX node"]
    assert hop["status"] == "within tolerance" and hop["first_divergence"] is None
    assert all(p["breaches"] == 0 and p["tolerance_ratio"] <= 1 for p in hop["points"])
    assert all(p["matched_by"] == "name" for p in hop["points"])
    matched = {p["module"]: p for p in hop["points"]}
    # every layer that computes, up to the logits, has its node; tf2onnx folds each Conv2D into the
    # BatchNormalization after it: the Conv node writes the batch norm's tensor and holds its output
    assert {"rescaling", "batch_normalization", "re_lu", "batch_normalization_1", "re_lu_1", "max_pooling2d",
            "flatten_2", "dense", "logits"} <= set(matched)
    assert matched["batch_normalization_1"]["op_type"] == "Conv"
    assert matched["re_lu"]["layout"] == "Keras NHWC compared as NCHW"
    assert matched["logits"]["op_type"] == "Add" and matched["logits"]["shape"] == [32, 10]
    unmatched = {u["module"]: u for u in hop["unmatched"]}
    assert {u["type"] for u in unmatched.values()} <= {"Conv2D", "Reshape"}
    assert all("fold" in unmatched[c]["reason"] for c in ("conv2d", "conv2d_1"))
    assert len(matched) + len(unmatched) == json.loads((folder / "diverge.json").read_text())["leaf_modules"]
    assert_real_report(folder)


@pytest.mark.parametrize(("op_type", "which", "layer"), [("Conv", 1, "batch_normalization_1"), ("MatMul", 0, "dense")])
def test_a_weight_planted_wrong_in_the_keras_onnx_file_is_found_at_its_layer(scratch_repository, tmp_path,
                                                                             op_type, which, layer):
    planted = perturb(scratch_repository, "keras-onnx", op_type, which)
    for variant in ("keras-onnx", "keras-torchscript"):  # onnx2torch converted the same file
        first_hop, *rest = hops(run_diverge(scratch_repository.root, variant, tmp_path / variant, samples=32))
        assert first_hop["status"] == "diverges", variant
        first = first_hop["points"][first_hop["first_divergence"]]
        assert first["module"] == layer and first["node"].split("/")[:-1] == planted.split("/")[:-1], (variant, first)
        assert all(p["breaches"] == 0 for p in first_hop["points"][:first_hop["first_divergence"]])
        assert all(p["breaches"] for p in first_hop["points"][first_hop["first_divergence"]:])  # it carries on
    # onnx2torch converted the file before the weight moved: its module of that very node parts from the ONNX
    [torchscript] = rest
    assert torchscript["status"] == "diverges"
    first = torchscript["points"][torchscript["first_divergence"]]
    assert first["module"] == first["node"] == planted, first
    assert all(p["breaches"] == 0 for p in torchscript["points"][:torchscript["first_divergence"]])
    text = (tmp_path / "keras-torchscript" / "diverge.md").read_text()
    assert f"first divergence: keras -> ONNX at {layer} -> " in text
    assert f"first divergence: ONNX -> TorchScript (onnx2torch) at {planted} -> {planted}" in text


def test_the_correct_keras_torchscript_chain_matches_every_onnx_node_to_its_onnx2torch_module(repository, tmp_path):
    keras, torchscript = hops(run_diverge(repository.root, "keras-torchscript", tmp_path / "out", samples=16))
    assert keras["name"] == "keras -> ONNX" and keras["status"] == "within tolerance"
    assert torchscript["name"] == "ONNX -> TorchScript (onnx2torch)" and torchscript["status"] == "within tolerance"
    assert torchscript["labels"] == ["ONNX node", "onnx2torch module"]
    # onnx2torch names each module after its ONNX node: every node, tf2onnx's layout ops included, has its module
    folder = repository.version_dir("keras-onnx", repository.get("keras-onnx")[1].version)
    nodes = [n.name for n in onnx.load(str(folder / "model.onnx")).graph.node]
    assert [p["module"] for p in torchscript["points"]] == nodes and not torchscript["unmatched"]
    assert all(p["node"] == p["module"] and p["matched_by"] == "name" and p["breaches"] == 0 for p in torchscript["points"])


def anonymize(repository: ModelRepository, variant: str) -> None:
    """The ONNX file as a converter that keeps no TF names would write it: nodes and inner tensors renamed."""
    config, record = repository.get(variant)
    folder = repository.version_dir(variant, record.version)
    model = onnx.load(str(folder / "model.onnx"))
    kept = {i.name for i in model.graph.input} | {t.name for t in model.graph.initializer}
    renamed: dict[str, str] = {}
    for index, node in enumerate(model.graph.node):
        node.name = f"n{index}"
        for i, name in enumerate(node.output):
            if name not in kept:
                node.output[i] = renamed.setdefault(name, f"t{len(renamed)}")
        for i, name in enumerate(node.input):
            node.input[i] = renamed.get(name, name)
    for output in model.graph.output:  # the output too: tf2onnx names it after the Keras layer it comes from
        output.name = renamed[output.name]
    onnx.save(model, str(folder / "model.onnx"))
    record.files = record_files(folder)
    repository.write_config(config)


def test_without_tf_names_keras_layers_are_matched_by_order_shape_and_op(scratch_repository, tmp_path):
    named = {p["module"]: p["node"] for p in hops(run_diverge(scratch_repository.root, "keras-onnx", tmp_path / "named",
                                                                samples=16))[0]["points"]}
    folder = scratch_repository.version_dir("keras-onnx", scratch_repository.get("keras-onnx")[1].version)
    nodes = [n.name for n in onnx.load(str(folder / "model.onnx")).graph.node]
    anonymize(scratch_repository, "keras-onnx")
    [hop] = hops(run_diverge(scratch_repository.root, "keras-onnx", tmp_path / "out", samples=16))
    assert hop["status"] == "within tolerance" and all(p["matched_by"] == "order+shape" for p in hop["points"])
    # positions survive the renaming: every layer the names matched takes the same node by order, shape and op
    by_order = {p["module"]: nodes[int(p["node"][1:])] for p in hop["points"]}
    assert {layer: by_order.get(layer) for layer in named} == named

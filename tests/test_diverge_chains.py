"""`crossdeploy diverge` on the chains that do not start with torch -> ONNX or Keras -> ONNX: onnx2tf's SavedModel,
the Keras converters' SavedModel and TFLite (fp32, int8), onnxruntime's int8 QDQ file, TorchScript, torch.export,
AOTInductor, ExecuTorch. On the built repository every one finds nothing beyond its tolerance and matches what
it says it matches; a fault planted in one artifact is found at the planted node, layer or module."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from crossdeploy.export.diverge import run_diverge
from crossdeploy.repository import ModelRepository, record_files

from .test_diverge import assert_real_report, perturb

LEAVES = ["features.0", "features.1", "features.2", "features.3", "features.4", "features.5", "features.6",
          "classifier.0", "classifier.1", "classifier.2", "classifier.3"]
KERAS_LAYERS = ["rescaling", "reshape", "conv2d", "batch_normalization", "re_lu", "conv2d_1", "batch_normalization_1",
                "re_lu_1", "max_pooling2d", "flatten_2", "dense", "logits"]


def hops(folder) -> list[dict]:
    return json.loads((folder / "diverge.json").read_text())["hops"]


def first_point(hop: dict) -> dict:
    assert hop["status"] == "diverges", hop["status"]
    assert all(p["breaches"] == 0 for p in hop["points"][:hop["first_divergence"]])
    return hop["points"][hop["first_divergence"]]


def onnx_nodes(repository: ModelRepository, variant: str) -> list[onnx.NodeProto]:
    folder = repository.version_dir(variant, repository.get(variant)[1].version)
    return list(onnx.load(str(folder / "model.onnx")).graph.node)


def test_onnx2tf_savedmodel_every_onnx_node_is_matched_by_order_shape_and_op(repository, tmp_path):
    torch_hop, tf_hop = hops(run_diverge(repository.root, "torch-savedmodel", tmp_path / "out", samples=16))
    assert torch_hop["status"] == tf_hop["status"] == "within tolerance"
    assert tf_hop["name"] == "ONNX -> SavedModel (onnx2tf)" and tf_hop["labels"] == ["ONNX node", "TF op"]
    assert [p["module"] for p in tf_hop["points"]] == [n.name for n in onnx_nodes(repository, "torch-onnx")]
    assert all(p["matched_by"] == "order+shape" for p in tf_hop["points"]) and not tf_hop["unmatched"]
    ops = {p["module"]: p for p in tf_hop["points"]}
    conv = ops[next(n.name for n in onnx_nodes(repository, "torch-onnx") if n.op_type == "Conv")]
    # a Conv ends in the Add of its bias in onnx2tf's graph, channels-last: turned back to NCHW
    assert conv["op_type"] == "AddV2" and conv["layout"] == "NHWC->NCHW"
    assert_real_report(tmp_path / "out")


@pytest.mark.parametrize(("variant", "ops"), [("keras-savedmodel", None), ("keras-tflite", "CONV_2D"),
                                              ("keras-tflite-int8", "CONV_2D")])
def test_keras_layers_are_matched_by_name_to_the_tf_artifacts_tensors(repository, tmp_path, variant, ops):
    [hop] = hops(run_diverge(repository.root, variant, tmp_path / "out", samples=16))
    assert hop["status"] == "within tolerance" and hop["first_divergence"] is None
    assert all(p["matched_by"] == "name" for p in hop["points"])
    matched = [p["module"] for p in hop["points"]]
    if ops is None:  # the SavedModel keeps every layer's ops: every layer has its tensor
        assert matched == KERAS_LAYERS and not hop["unmatched"]
        return
    # TFLite fuses each Conv2D and BatchNormalization into the CONV_2D that writes the ReLU's tensor
    by_layer = {p["module"]: p for p in hop["points"]}
    assert by_layer["re_lu_1"]["op_type"] == ops and by_layer["logits"]["shape"] == [16, 10]
    unmatched = {u["module"]: u["reason"] for u in hop["unmatched"]}
    for fused, holder in [("conv2d", "re_lu"), ("batch_normalization", "re_lu"), ("conv2d_1", "re_lu_1"),
                          ("batch_normalization_1", "re_lu_1")]:
        assert unmatched.pop(fused) == f"TFLite fused it into {by_layer[holder]['node']}, which writes a later layer's output"
    # Rescaling's `+ 0` is gone: no tensor is its output op, and it is said rather than matched to its MUL
    assert list(unmatched) == ["rescaling"] and "rescaling/add" in unmatched["rescaling"]
    if variant.endswith("int8"):  # int8 tensors dequantized, each under a bound in its quantization steps
        assert all(p["atol"] and p["atol"] > 0 for p in hop["points"])
        assert by_layer["logits"]["op_type"] == "DEQUANTIZE"


def test_the_int8_qdq_file_is_matched_to_the_fp32_one_by_tensor_name(repository, tmp_path):
    torch_hop, int8 = hops(run_diverge(repository.root, "torch-onnx-int8", tmp_path / "out", samples=16))
    assert torch_hop["status"] == int8["status"] == "within tolerance"
    assert all(p["matched_by"] == "name" for p in int8["points"])
    fp32 = {n.name: n.op_type for n in onnx_nodes(repository, "torch-onnx")}
    # the quantizer drops each Relu after a Conv/Gemm (its QuantizeLinear clamps at 0): the Conv/Gemm holds it
    assert {u["module"]: fp32[u["module"]] for u in int8["unmatched"]} and {fp32[u["module"]] for u in int8["unmatched"]} <= {"Conv", "Gemm"}
    assert all("dropped" in u["reason"] for u in int8["unmatched"])
    relus = [p for p in int8["points"] if fp32[p["module"]] == "Relu"]
    assert relus and all(p["op_type"] in ("Conv", "Gemm") and p["atol"] for p in relus)


@pytest.mark.parametrize(("variant", "label"), [("torch-torchscript", "scripted submodule"), ("torch-export", "torch.export node")])
def test_every_leaf_module_is_matched_by_name_in_torchscript_and_torch_export(repository, tmp_path, variant, label):
    [hop] = hops(run_diverge(repository.root, variant, tmp_path / "out", samples=16))
    assert hop["status"] == "within tolerance" and hop["labels"] == ["module", label]
    assert [p["module"] for p in hop["points"]] == LEAVES and not hop["unmatched"]
    assert all(p["matched_by"] == "name" and p["breaches"] == 0 for p in hop["points"])


@pytest.mark.parametrize("variant", ["torch-aoti", "torch-executorch"])
def test_a_compiled_artifact_is_one_point_and_the_report_says_why(repository, tmp_path, variant):
    [hop] = hops(run_diverge(repository.root, variant, tmp_path / "out", samples=16))
    assert hop["status"] == "within tolerance" and len(hop["points"]) == 1
    assert hop["points"][0]["module"] == "logits" and "the final output is the only point" in hop["reason"]
    assert "the final output is the only point" in (tmp_path / "out" / "diverge.md").read_text()


def rerecord(repository: ModelRepository, variant: str):
    """The version folder of `variant` to damage; re-records its files' sha256 in the config when done."""
    config, record = repository.get(variant)
    folder = repository.version_dir(variant, record.version)

    def done():
        record.files = record_files(folder)
        repository.write_config(config)
    return folder, done


def test_a_weight_planted_wrong_in_the_onnx_file_shows_on_the_onnx2tf_savedmodel_hop_at_that_node(scratch_repository, tmp_path):
    planted = perturb(scratch_repository, "torch-onnx", "Conv", 1)
    torch_hop, tf_hop = hops(run_diverge(scratch_repository.root, "torch-savedmodel", tmp_path / "out", samples=16))
    assert first_point(torch_hop)["node"] == planted
    # onnx2tf converted the file before the weight moved: the SavedModel parts from the ONNX at that very node
    assert first_point(tf_hop)["module"] == planted


def test_a_weight_planted_wrong_in_onnx2tfs_savedmodel_is_found_at_the_onnx_node_it_came_from(scratch_repository, tmp_path):
    """onnx2tf stores the weights as graph constants: one of the second convolution's kernel is moved in
    saved_model.pb itself, so torch -> ONNX stays clean and the ONNX -> SavedModel hop parts at that Conv."""
    from tensorflow.core.protobuf import saved_model_pb2
    from tensorflow.python.framework import tensor_util

    folder, done = rerecord(scratch_repository, "torch-savedmodel")
    path = folder / "model.savedmodel" / "saved_model.pb"
    saved = saved_model_pb2.SavedModel.FromString(path.read_bytes())
    graph = saved.meta_graphs[0].graph_def
    [kernel] = [n for n in [*graph.node, *(n for f in graph.library.function for n in f.node_def)]
                if n.op == "Const" and [d.size for d in n.attr["value"].tensor.tensor_shape.dim] == [3, 3, 16, 32]]
    values = tensor_util.MakeNdarray(kernel.attr["value"].tensor).copy()
    values.flat[0] += 0.05 * float(np.abs(values).max())
    kernel.attr["value"].tensor.CopyFrom(tensor_util.make_tensor_proto(values))
    path.write_bytes(saved.SerializeToString())
    done()
    torch_hop, tf_hop = hops(run_diverge(scratch_repository.root, "torch-savedmodel", tmp_path / "out", samples=16))
    assert torch_hop["status"] == "within tolerance"
    conv = [n.name for n in onnx_nodes(scratch_repository, "torch-onnx") if n.op_type == "Conv"][1]
    first = first_point(tf_hop)
    assert first["module"] == conv and first["op_type"] == "AddV2", first


def test_an_int8_weight_planted_wrong_is_found_at_its_node(scratch_repository, tmp_path):
    folder, done = rerecord(scratch_repository, "torch-onnx-int8")
    model = onnx.load(str(folder / "model.onnx"))
    conv = [n for n in model.graph.node if n.op_type == "Conv"][1]
    weight = next(t for t in model.graph.initializer if t.name == conv.input[1].removesuffix("_DequantizeLinear_Output") + "_quantized")
    values = numpy_helper.to_array(weight).copy()
    values.flat[int(np.abs(values.astype(int)).argmax())] *= -1  # the largest int8 weight of the kernel, negated
    weight.CopyFrom(numpy_helper.from_array(values, weight.name))
    onnx.save(model, str(folder / "model.onnx"))
    done()
    torch_hop, int8 = hops(run_diverge(scratch_repository.root, "torch-onnx-int8", tmp_path / "out", samples=16))
    assert torch_hop["status"] == "within tolerance"
    first = first_point(int8)
    assert first["node"] == conv.name and first["op_type"] == "Conv", first
    data = [i for i in first["inputs"] if "tolerance_ratio" in i]
    assert data and all(i["tolerance_ratio"] <= 1 for i in data)  # what flows in is fine: the node's weight is not
    assert f"-> {conv.name} (Conv)" in (tmp_path / "out" / "diverge.md").read_text()


def test_an_int8_tflite_weight_planted_wrong_is_found_at_the_op_its_layer_was_fused_into(scratch_repository, tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    folder, done = rerecord(scratch_repository, "keras-tflite-int8")
    data = bytearray((folder / "model.tflite").read_bytes())
    interpreter = Interpreter(model_content=bytes(data))
    kernel = next(d for d in interpreter.get_tensor_details() if d["name"] == "digits_cnn/conv2d_1/Conv2D")
    values = interpreter.get_tensor(kernel["index"])
    assert values.dtype == np.int8 and bytes(data).count(values.tobytes()) == 1
    at = bytes(data).index(values.tobytes()) + int(np.abs(values.astype(int)).argmax())
    data[at] = (-int(values.flat[at - bytes(data).index(values.tobytes())])) & 0xFF  # that int8 weight, negated
    (folder / "model.tflite").write_bytes(bytes(data))
    done()
    [hop] = hops(run_diverge(scratch_repository.root, "keras-tflite-int8", tmp_path / "out", samples=16))
    first = first_point(hop)
    assert first["module"] == "re_lu_1" and first["op_type"] == "CONV_2D"
    fused = {u["module"]: u["reason"] for u in hop["unmatched"]}
    assert f"fused it into {first['node']}" in fused["conv2d_1"]


def test_a_keras_savedmodel_weight_planted_wrong_is_found_at_its_layer(scratch_repository, tmp_path):
    import tensorflow as tf

    folder, done = rerecord(scratch_repository, "keras-savedmodel")
    path = str(folder / "model.savedmodel")
    loaded = tf.saved_model.load(path)
    kernel = next(v for v in loaded.variables if "conv2d_1/kernel" in v.name)
    value = kernel.numpy()
    value.flat[0] += 0.05 * float(np.abs(value).max())
    kernel.assign(value)
    tf.saved_model.save(loaded, path, signatures=loaded.signatures)
    (folder / "model.savedmodel" / "fingerprint.pb").unlink(missing_ok=True)
    done()
    [hop] = hops(run_diverge(scratch_repository.root, "keras-savedmodel", tmp_path / "out", samples=16))
    first = first_point(hop)
    assert first["module"] == "conv2d_1" and first["op_type"] == "BiasAdd"


@pytest.mark.parametrize("variant", ["torch-torchscript", "torch-export"])
def test_a_torch_native_weight_planted_wrong_is_found_at_its_module(scratch_repository, tmp_path, variant):
    import torch

    folder, done = rerecord(scratch_repository, variant)
    with torch.no_grad():
        if variant == "torch-torchscript":
            model = torch.jit.load(str(folder / "model.pt"))
            weight = dict(model.named_parameters())["features.3.weight"]
            weight.view(-1)[0] += 0.05 * weight.abs().max()
            torch.jit.save(model, str(folder / "model.pt"))
        else:
            program = torch.export.load(str(folder / "model.pt2"))
            weight = program.state_dict["features.3.weight"]
            weight.view(-1)[0] += 0.05 * weight.abs().max()
            torch.export.save(program, str(folder / "model.pt2"))
    done()
    [hop] = hops(run_diverge(scratch_repository.root, variant, tmp_path / "out", samples=16))
    first = first_point(hop)
    assert first["module"] == "features.3" and first["module_type"] == "Conv2d", first

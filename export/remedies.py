"""Known remedies: the options each tool documents for its classic failures, tried by `crossdeploy matrix` when a
pathway fails, each as its own attempt with its own load, run and parity check.

A remedy is a named option set for one exporter: the pathway's own (`target="self"`) or the one whose file the
pathway converts (`target="upstream"`, e.g. a different ONNX exporter under onnx2tf). Per pathway they are tried
mostly in order of what they cost where the variant is served (nothing, a bigger file, a deprecated exporter, a
fixed batch, another runtime dependency); onnx2tf's own flags come before re-exporting the ONNX file it converts,
since they rescue the classic LSTM failure without changing that file. The first that passes parity is kept; its variant's config.json records it
(VariantConfig.remedy), so no remedy is ever applied silently.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from crossdeploy.repository.config import AppliedRemedy

# Another opset than the exporters' own: torch.onnx uses the spec's (default 18), tf2onnx here 17 (its own default is 15).
OTHER_OPSET, OTHER_TF2ONNX_OPSET = 17, 15


@dataclass(frozen=True)
class Remedy:
    name: str  # short, stable: the report says "ok with <name>"
    summary: str  # what it does, in the tool's own terms
    cost: str  # what it costs where the variant is served
    documented: str  # where the tool documents it
    options: dict = field(default_factory=dict)
    target: Literal["self", "upstream"] = "self"
    needs: Literal["", "rnn", "dynamic-batch"] = ""  # tried only for a model with recurrent layers / a dynamic batch

    def record(self, replaces: str) -> AppliedRemedy:
        own = self.options if self.target == "self" else {}
        upstream = self.options if self.target == "upstream" else {}
        return AppliedRemedy(name=self.name, options=own, upstream=upstream, cost=self.cost,
                             replaces=(replaces.splitlines() or [""])[0][:300])


KERAS_UNROLL = Remedy(
    "keras-unroll", "Keras RNN layers rebuilt with unroll=True (same weights): no while loop, no tensor lists",
    "the recurrence is unrolled over the sequence length: a bigger graph, fixed-length sequences only",
    "tf_keras RNN layers' `unroll` argument", {"unroll": True}, needs="rnn")
TFLITE_FIXED_BATCH = Remedy(
    "fixed-batch-1", "the serving signature's batch fixed at 1, so tensor-list shapes are static",
    "fixed batch 1: a batch of N costs N calls (the adapter splits it)",
    "the TFLite converter's error (element_shape must be static)", {"fixed_batch": 1}, needs="dynamic-batch")
TFLITE_FLEX = Remedy(
    "tflite-flex", "supported_ops TFLITE_BUILTINS + SELECT_TF_OPS, _experimental_lower_tensor_list_ops=False",
    "needs the Flex delegate (TensorFlow kernels linked into the interpreter)",
    "the TFLite converter's own error message; ai.google.dev/edge/litert 'Select TensorFlow operators'",
    {"select_tf_ops": True})
ONNX2TF_NO_ONNXSIM = Remedy(
    "onnx2tf-nuo", "onnx2tf -nuo (not_use_onnxsim): the graph is converted without onnx-simplifier",
    "none at serving time (the converted graph is not simplified)", "onnx2tf --help: -nuo",
    {"onnx2tf": {"not_use_onnxsim": True}})
ONNX2TF_UNROLL = Remedy(
    "onnx2tf-nuo-eru", "onnx2tf -nuo -eru (not_use_onnxsim, enable_rnn_unroll): RNN loops expanded",
    "the recurrence is unrolled over the sequence length: a bigger file", "onnx2tf --help: -nuo, -eru",
    {"onnx2tf": {"not_use_onnxsim": True, "enable_rnn_unroll": True}}, needs="rnn")
ONNX2TF_FIXED_BATCH = Remedy(
    "onnx2tf-b1", "onnx2tf -b 1 (batch_size): the dynamic batch fixed at 1",
    "fixed batch 1: a batch of N costs N calls (the adapter splits it)", "onnx2tf --help: -b",
    {"onnx2tf": {"batch_size": 1}}, needs="dynamic-batch")
TORCHSCRIPT_ONNX = Remedy(
    "torchscript-onnx", "the TorchScript-based torch.onnx exporter (dynamo=False, dynamic_axes)",
    "none at serving time; the exporter is deprecated in torch", "torch.onnx.export(dynamo=False)",
    {"dynamo": False})
ONNX_OPSET = Remedy(
    f"opset-{OTHER_OPSET}", f"ONNX opset {OTHER_OPSET} instead of the spec's", "none at serving time",
    "the exporter's opset_version / opset argument", {"opset": OTHER_OPSET})
TF2ONNX_OPSET = Remedy(
    f"opset-{OTHER_TF2ONNX_OPSET}", f"tf2onnx at ONNX opset {OTHER_TF2ONNX_OPSET} (its default) instead of 17",
    "none at serving time", "tf2onnx's --opset", {"opset": OTHER_TF2ONNX_OPSET})
TORCH_STATIC_BATCH = Remedy(
    "fixed-batch-1", "torch.export with no dynamic_shapes: the batch traced at 1",
    "fixed batch 1: a batch of N costs N calls (the adapter splits it)", "torch.export.export(dynamic_shapes=None)",
    {"fixed_batch": 1}, needs="dynamic-batch")


def upstream(remedy: Remedy) -> Remedy:
    """The same option set, given to the exporter whose file the pathway converts."""
    return Remedy(remedy.name, remedy.summary, remedy.cost, remedy.documented, remedy.options, "upstream", remedy.needs)


ONNX2TF = (ONNX2TF_NO_ONNXSIM, ONNX2TF_UNROLL, upstream(ONNX_OPSET), upstream(TORCHSCRIPT_ONNX), ONNX2TF_FIXED_BATCH)
KERAS_TFLITE = (KERAS_UNROLL, TFLITE_FIXED_BATCH, TFLITE_FLEX)

REMEDIES: dict[str, tuple[Remedy, ...]] = {
    "torch-export": (TORCH_STATIC_BATCH,),
    "torch-aoti": (TORCH_STATIC_BATCH,),
    "torch-executorch": (TORCH_STATIC_BATCH,),
    "torch-onnx": (ONNX_OPSET, TORCHSCRIPT_ONNX),
    "torch-savedmodel": ONNX2TF,
    "torch-tflite": ONNX2TF,
    "keras-tflite": KERAS_TFLITE,
    "keras-tflite-int8": KERAS_TFLITE,
    "keras-onnx": (TF2ONNX_OPSET, KERAS_UNROLL),
    "keras-torchscript": (upstream(TF2ONNX_OPSET), upstream(KERAS_UNROLL)),
}


def has_recurrent_layers(model) -> bool:
    """A torch.nn.RNNBase module (LSTM, GRU, RNN) or a tf_keras RNN layer, anywhere in the model."""
    try:
        import torch

        if isinstance(model, torch.nn.Module):
            return any(isinstance(m, torch.nn.RNNBase) for m in model.modules())
    except ImportError:  # a Keras-only environment
        pass
    import tf_keras as keras

    return any(isinstance(layer, keras.layers.RNN) for layer in _keras_layers(model))


def _keras_layers(model):
    for layer in getattr(model, "layers", []):
        yield layer
        yield from _keras_layers(layer)


def remedies_for(pathway: str, model, dynamic_batch: bool, allowed: list[str] | None = None) -> list[Remedy]:
    """The remedies to try for a failed pathway, in order; `allowed` (names) narrows them, [] turns them off."""
    recurrent = None
    chosen = []
    for remedy in REMEDIES.get(pathway, ()):
        if allowed is not None and remedy.name not in allowed:
            continue
        if remedy.needs == "dynamic-batch" and not dynamic_batch:
            continue
        if remedy.needs == "rnn":
            recurrent = has_recurrent_layers(model) if recurrent is None else recurrent
            if not recurrent:
                continue
        chosen.append(remedy)
    return chosen


def known_names() -> list[str]:
    return sorted({r.name for remedies in REMEDIES.values() for r in remedies})

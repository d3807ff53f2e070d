"""`crossdeploy diverge VARIANT`: where along a variant's conversion chain the numbers first leave its tolerance.

The source model (the eager variant, through its runtime adapter) and each artifact of the chain run on the same
samples (the model's parity samples); their intermediate tensors are matched (see diverge_align) and compared
under the variant's own tolerance, the one rule parity applies to the final outputs (int8 parity compares no
values: an int8 tensor is held to INT8_STEPS quantization steps, see diverge_int8). Every non-reference pathway is
followed; what each hop matches, and how:
- through ONNX: torch -> ONNX (module scopes), then ONNX -> TFLite / SavedModel (onnx2tf: order, shape, op;
  diverge_tflite, diverge_tf) or ONNX -> ONNX int8 (onnxruntime QDQ: tensor names; diverge_int8); Keras -> ONNX
  (tf2onnx: name scopes), then ONNX -> TorchScript (onnx2torch: node names; diverge_keras);
- straight from the source: Keras -> SavedModel / TFLite (fp32, int8) by layer name scopes (diverge_tf);
  torch -> torch.export (nn_module_stack), TorchScript (submodules by qualified name), AOTInductor and ExecuTorch
  (compiled: the final output only, and why; diverge_torch).
A hop whose tensors cannot be matched says so and why, never skipped silently.
"""

from __future__ import annotations

import json

from pathlib import Path

import numpy as np

from crossdeploy.errors import CrossdeployError
from crossdeploy.repository import INT8_STEPS, V2_TO_NUMPY, ModelRepository, Tolerance, default_tolerance, reference_of

from . import diverge_report
from .diverge_align import Hop, align
from .diverge_capture import onnx_all_outputs, torch_leaf_outputs

# pathway -> (the pathway whose ONNX file its chain goes through, None when it goes straight from the source; the
# hop after that ONNX file, or the one hop from the source)
CHAINS = {
    "torch-onnx": ("torch-onnx", None),
    "torch-onnx-int8": ("torch-onnx", "ONNX -> ONNX int8 (onnxruntime QDQ)"),
    "torch-savedmodel": ("torch-onnx", "ONNX -> SavedModel (onnx2tf)"),
    "torch-tflite": ("torch-onnx", "ONNX -> TFLite (onnx2tf)"),
    "keras-onnx": ("keras-onnx", None),
    "keras-torchscript": ("keras-onnx", "ONNX -> TorchScript (onnx2torch)"),
    "keras-savedmodel": (None, "keras -> SavedModel"),
    "keras-tflite": (None, "keras -> TFLite"),
    "keras-tflite-int8": (None, "keras -> TFLite int8"),
    "torch-torchscript": (None, "torch -> TorchScript"),
    "torch-export": (None, "torch -> torch.export"),
    "torch-aoti": (None, "torch -> AOTInductor"),
    "torch-executorch": (None, "torch -> ExecuTorch"),
}


def _onnx_variant(repository: ModelRepository, config) -> str:
    """The repository variant holding the ONNX file this variant's chain went through."""
    pathway = CHAINS[config.pathway][0]
    found = [c.name for c in repository.list() if c.pathway == pathway and c.model == config.model]
    if not found:
        raise CrossdeployError(f"{config.name}: its chain goes through the {pathway} ONNX file, and the repository "
                               f"{repository.root} has no {pathway} variant of {config.model}")
    return config.name if config.name in found else found[0]


def _samples(model: str, count: int):
    from .parity import builtin_samples

    samples = builtin_samples()
    if model not in samples:
        raise CrossdeployError(f"no parity samples for the model '{model}' (only the built-in specs' models so far)")
    return samples[model][0][:count]


def _float(tolerance: Tolerance) -> Tolerance:
    """The tolerance for tensors compared by value: an int8 variant's compares none, its float tensors keep fp32's."""
    return tolerance if tolerance.atol is not None else default_tolerance("fp32")


def _through_onnx(repo: ModelRepository, config, reference: str, x: np.ndarray) -> tuple[list[Hop], list[str], int]:
    onnx_variant = _onnx_variant(repo, config)
    tolerance = config.tolerance if config.tolerance.atol is not None else _float(repo.config(onnx_variant).tolerance)
    if config.source_framework == "keras":
        from .diverge_keras import keras_hop

        first, capture, read = keras_hop(repo, reference, onnx_variant, x, tolerance)
    else:
        torch_points = torch_leaf_outputs(repo, reference, x)
        capture, read = onnx_all_outputs(repo, onnx_variant, x), len(torch_points)
        first = align(torch_points, capture, tolerance, "torch -> ONNX", reference, onnx_variant)
    hops: list[Hop] = [first]
    after, variant = CHAINS[config.pathway][1], config.name
    if config.format == "tflite":
        from .diverge_tflite import TFLITE_OPS, onnx_as_reference, tflite_all_tensors

        hops.append(align(onnx_as_reference(capture), tflite_all_tensors(repo, variant, x), tolerance, after,
                          onnx_variant, variant, ops=TFLITE_OPS, labels=("ONNX node", "TFLite op")))
    elif config.format == "savedmodel":
        from .diverge_tf import onnx2tf_savedmodel_hop

        hops.append(onnx2tf_savedmodel_hop(repo, capture, onnx_variant, variant, x, tolerance, after))
    elif config.format == "torchscript":
        from .diverge_keras import onnx2torch_hop

        hops.append(onnx2torch_hop(repo, capture, onnx_variant, variant, x, tolerance, after))
    elif after:  # the int8 file quantized from the fp32 one
        from .diverge_int8 import int8_hop

        hops.append(int8_hop(repo, capture, onnx_variant, variant, x, tolerance, after))
    return hops, [reference, onnx_variant] + ([variant] if variant != onnx_variant else []), read


def _from_source(repo: ModelRepository, config, reference: str, x: np.ndarray) -> tuple[list[Hop], list[str], int]:
    name = CHAINS[config.pathway][1]
    if config.source_framework == "keras":
        from .diverge_tf import keras_savedmodel_hop, keras_tflite_hop

        build = keras_savedmodel_hop if config.format == "savedmodel" else keras_tflite_hop
        hop, read = build(repo, reference, config.name, x, _float(config.tolerance), name)
    else:
        from .diverge_torch import torch_native_hop

        source = torch_leaf_outputs(repo, reference, x)
        hop, read = torch_native_hop(repo, config, reference, x, source), len(source)
    return [hop], [reference, config.name], read


def _checked(inputs: np.ndarray, config) -> np.ndarray:
    """Given inputs against the variant's first input signature (-1: any size), before any model is loaded."""
    want = config.inputs[0].shape
    if inputs.ndim != len(want) or any(w != -1 and w != d for w, d in zip(want[1:], inputs.shape[1:])) or not len(inputs):
        raise CrossdeployError(f"{config.name}: inputs shaped {list(inputs.shape)} do not fit its input "
                               f"'{config.inputs[0].name}' {list(want)}")
    return inputs.astype(V2_TO_NUMPY[config.inputs[0].datatype], copy=False)


def run_diverge(repository: Path, variant: str, out: Path, samples: int = 64, inputs: np.ndarray | None = None) -> Path:
    """Writes diverge.json, diverge.md and diverge.png into `out` and returns it. `inputs`: the samples to run
    (a user spec's, as the matrix has them); default the built-in spec's parity samples of the variant's model."""
    repo = repository if isinstance(repository, ModelRepository) else ModelRepository(repository)
    if variant not in repo.names():
        raise CrossdeployError(f"variant '{variant}' is not in the repository {repo.root}")
    config = repo.config(variant)
    if config.pathway not in CHAINS:
        raise CrossdeployError(f"{variant}: diverge follows a variant's chain from its eager reference, and "
                               f"{config.pathway} is that reference (or a pathway it does not know): nothing to follow")
    if samples < 1:
        raise CrossdeployError(f"--samples must be at least 1, not {samples}")
    reference = reference_of(config, repo.list())
    if reference is None:
        raise CrossdeployError(f"{variant}: no eager reference variant of {config.model} in the repository")
    if config.remedy is not None and config.remedy.upstream:
        raise CrossdeployError(f"{variant} was converted from an ONNX file re-exported with the remedy "
                               f"{config.remedy.name}, which the repository does not hold: its chain cannot be followed")
    x = _checked(inputs[:samples], config) if inputs is not None else _samples(config.model, samples)
    plan = _from_source if CHAINS[config.pathway][0] is None else _through_onnx
    hops, chain, read = plan(repo, config, reference, x)
    tolerance = config.tolerance.describe()
    if config.tolerance.atol is None:
        tolerance += (f"; intermediate tensors here: |a-b| <= {INT8_STEPS} quantization steps (of the coarsest among "
                      "the tensor's and its inputs'), fp32's for a tensor with nothing quantized upstream")
    report = {"variant": variant, "model": config.model, "samples": int(len(x)), "chain": chain,
              "tolerance": tolerance, "leaf_modules": read}
    return diverge_report.write(Path(out), report, hops)


def first_divergence(repository: Path | ModelRepository, variant: str, out: Path,
                     inputs: np.ndarray | None = None) -> str | None:
    """The diagnosis a failing variant's parity message carries: "first divergence: <hop> at <layer> -> <node>
    (<op>), max abs <x>, …" and where the plot is, or None when its chain is not one diverge follows."""
    repo = repository if isinstance(repository, ModelRepository) else ModelRepository(repository)
    if variant not in repo.names() or repo.config(variant).pathway not in CHAINS:
        return None
    folder = run_diverge(repo, variant, out, inputs=inputs)
    found = [v for v in json.loads((folder / "diverge.json").read_text())["verdicts"] if v.startswith("first divergence")]
    return f"{variant}: {found[0] if found else 'no layer leaves the tolerance on the hops diagnosed'} (plot: {folder / 'diverge.png'})"


__all__ = ["CHAINS", "first_divergence", "run_diverge"]

"""`crossdeploy diverge VARIANT`: where along a variant's conversion chain the numbers first leave its tolerance.

The source model (the eager variant, through its runtime adapter) and each artifact of the chain run on the same
samples (the model's parity samples); their intermediate tensors are matched (see diverge_align) and compared
under the variant's own tolerance, the one rule parity applies to the final outputs. Chains diagnosed so far:
torch -> ONNX (torch-onnx), then ONNX -> TFLite (torch-tflite, which onnx2tf converted from the torch-onnx
variant's file); Keras -> ONNX (keras-onnx, through tf2onnx: diverge_keras), then ONNX -> TorchScript
(keras-torchscript, onnx2torch's modules). torch-savedmodel's onnx2tf hop is listed as not diagnosed yet, never
skipped silently.
"""

from __future__ import annotations

import json

from pathlib import Path

import numpy as np

from crossdeploy.errors import CrossdeployError
from crossdeploy.repository import ModelRepository, reference_of

from . import diverge_report
from .diverge_align import Hop, align
from .diverge_capture import onnx_all_outputs, torch_leaf_outputs

# pathway -> (where its ONNX comes from, the hop after source -> ONNX: diagnosed, not yet, or none)
CHAINS = {
    "torch-onnx": ("torch-onnx", None),
    "torch-savedmodel": ("torch-onnx", "ONNX -> SavedModel (onnx2tf)"),
    "torch-tflite": ("torch-onnx", "ONNX -> TFLite (onnx2tf)"),
    "keras-onnx": ("keras-onnx", None),
    "keras-torchscript": ("keras-onnx", "ONNX -> TorchScript (onnx2torch)"),
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


def run_diverge(repository: Path, variant: str, out: Path, samples: int = 64, inputs: np.ndarray | None = None) -> Path:
    """Writes diverge.json, diverge.md and diverge.png into `out` and returns it. `inputs`: the samples to run
    (a user spec's, as the matrix has them); default the built-in spec's parity samples of the variant's model."""
    repo = repository if isinstance(repository, ModelRepository) else ModelRepository(repository)
    if variant not in repo.names():
        raise CrossdeployError(f"variant '{variant}' is not in the repository {repo.root}")
    config = repo.config(variant)
    if config.pathway not in CHAINS:
        raise CrossdeployError(f"{variant}: diverge follows chains that go through ONNX in fp32 "
                               f"({', '.join(CHAINS)}); the {config.pathway} chain is not diagnosed yet")
    if samples < 1:
        raise CrossdeployError(f"--samples must be at least 1, not {samples}")
    reference = reference_of(config, repo.list())
    if reference is None:
        raise CrossdeployError(f"{variant}: no eager reference variant of {config.model} in the repository")
    onnx_variant = _onnx_variant(repo, config)
    x = inputs[:samples] if inputs is not None else _samples(config.model, samples)
    if config.source_framework == "keras":
        from .diverge_keras import keras_hop

        first, capture, read = keras_hop(repo, reference, onnx_variant, x, config.tolerance)
    else:
        torch_points = torch_leaf_outputs(repo, reference, x)
        capture, read = onnx_all_outputs(repo, onnx_variant, x), len(torch_points)
        first = align(torch_points, capture, config.tolerance, "torch -> ONNX", reference, onnx_variant)
    hops: list[Hop] = [first]
    after = CHAINS[config.pathway][1]
    if config.format == "tflite":
        from .diverge_tflite import TFLITE_OPS, onnx_as_reference, tflite_all_tensors

        hops.append(align(onnx_as_reference(capture), tflite_all_tensors(repo, variant, x), config.tolerance, after,
                          onnx_variant, variant, ops=TFLITE_OPS, labels=("ONNX node", "TFLite op")))
    elif config.format == "torchscript" and config.source_framework == "keras":
        from .diverge_keras import onnx2torch_hop

        hops.append(onnx2torch_hop(repo, capture, onnx_variant, variant, x, config.tolerance, after))
    elif after:
        hops.append(Hop(after, onnx_variant, variant, "not diagnosed yet",
                        "matching onnx2tf's SavedModel tensors to the ONNX nodes is not built yet"))
    chain = [reference, onnx_variant] + ([variant] if variant != onnx_variant else [])
    report = {"variant": variant, "model": config.model, "samples": int(len(x)), "chain": chain,
              "tolerance": config.tolerance.describe(), "leaf_modules": read}
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

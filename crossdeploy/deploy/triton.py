"""`crossdeploy deploy triton`: a Triton model repository for the variants Triton serves with its own backends
(a config.pbtxt and a hard link of the artifact each), and UNSUPPORTED.md / unsupported.json for the rest.

The target is a current Triton (26.05 or later): ONNX through onnxruntime, TorchScript through LibTorch, and
AOTInductor packages through the PyTorch backend's `torch_aoti` platform (beta since 26.03; tensor names from the
package's call spec since 26.05). A torch.export ExportedProgram `.pt2` is not something that backend loads: it
reads a `.pt2` only as an AOTInductor package.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from crossdeploy.repository import PLATFORMS, ModelRepository, TensorSignature, VariantConfig
from crossdeploy.settings import Settings

from .common import folder, link_or_copy

TORCH_AOTI = PLATFORMS["aoti"]


@dataclass(frozen=True)
class Platform:
    name: str
    default_file: str  # the file name Triton looks for when the config names none
    batching: bool  # whether Triton may batch requests for this platform

    def tensor_name(self, kind: str, index: int, contract: str) -> str:
        """The name Triton's backend binds a tensor by. onnxruntime: the graph's own names (the contract's).
        LibTorch: `<name>__<index>`. torch_aoti: the ordinal `INPUT__<i>` / `OUTPUT__<i>` of the call spec."""
        if self.name == PLATFORMS["torchscript"]:
            return f"{contract}__{index}"
        if self.name == TORCH_AOTI:
            return f"{kind.upper()}__{index}"
        return contract


SERVED = {
    "onnx": Platform(PLATFORMS["onnx"], "model.onnx", True),
    "torchscript": Platform(PLATFORMS["torchscript"], "model.pt", True),
    # The backend does not yet run PT2 packages at batch sizes above 1: no batching, batch pinned to 1.
    "aoti": Platform(TORCH_AOTI, "model.pt2", False),
}
WHY_NOT = {
    "torch-eager": "weights plus crossdeploy's model code (a state_dict and a Python module): Triton's PyTorch "
                   "backend runs TorchScript or AOTInductor packages, not an nn.Module it would have to build; "
                   "serve torch-torchscript or torch-aoti instead",
    "torch-export": "a torch.export ExportedProgram (.pt2 from torch.export.save): Triton's PyTorch backend reads "
                    "a .pt2 only as an AOTInductor package (platform torch_aoti); serve torch-aoti, the same "
                    "program compiled by AOTInductor",
    "executorch": "an ExecuTorch .pte program for on-device runtimes: no Triton backend runs ExecuTorch",
    "keras": "a .keras archive: Triton has no Keras backend (and its TensorFlow backend is deprecated)",
    "savedmodel": "a TensorFlow SavedModel: Triton's TensorFlow backend was deprecated in 25.03 and is not in "
                  "current containers (25.02 is the last with it), the ones torch_aoti needs",
    "tflite": "a TensorFlow Lite flatbuffer: Triton ships no TFLite backend (only a community one, for Arm)",
}


def dims(shape: list[int], batched: bool) -> list[int]:
    return shape[1:] if batched else shape


def tensor_block(kind: str, tensors: list[TensorSignature], platform: Platform, batched: bool) -> str:
    entries = []
    for index, tensor in enumerate(tensors):
        datatype = "STRING" if tensor.datatype == "BYTES" else tensor.datatype
        shape = dims(list(tensor.shape), batched)
        if not platform.batching and shape and shape[0] == -1:
            shape = [1, *shape[1:]]
        entries.append(f'  {{\n    name: "{platform.tensor_name(kind, index, tensor.name)}"\n'
                       f"    data_type: TYPE_{datatype}\n    dims: [ {', '.join(map(str, shape))} ]\n  }}")
    return f"{kind} [\n" + ",\n".join(entries) + "\n]\n"


def max_batch_size(config: VariantConfig, platform: Platform, settings: Settings) -> int:
    """Triton's batch dimension: the variant's max_batch, else the gateway's cap when the contract's first
    dimension is a batch; 0 (no batch dimension, dims are the whole shape) otherwise."""
    if not (platform.batching and config.dynamic_batch):
        return 0
    return config.max_batch or settings.max_batch


def config_pbtxt(config: VariantConfig, platform: Platform, artifact: str, settings: Settings) -> str:
    batch = max_batch_size(config, platform, settings)
    notes = "".join(f"# {' '.join(note.split())}\n" for note in config.notes)  # what a deployer must know
    text = notes + (f'name: "{config.name}"\nplatform: "{platform.name}"\n'
            + ('backend: "pytorch"\n' if platform.name == TORCH_AOTI else "")
            + f"max_batch_size: {batch}\n"
            + tensor_block("input", config.inputs, platform, batch > 0)
            + tensor_block("output", config.outputs, platform, batch > 0)
            + "instance_group [\n  {\n    count: 1\n    kind: KIND_CPU\n  }\n]\n")
    if batch:
        text += "dynamic_batching {\n}\n"
    if artifact != platform.default_file:
        text += f'default_model_filename: "{artifact}"\n'
    return text


def served(repository: ModelRepository, config: VariantConfig, out: Path, settings: Settings) -> list[Path]:
    """config.pbtxt and the latest version's files (hard links); the artifact is the file with the extension
    Triton's default name has (any other file, such as ONNX external data, sits beside it)."""
    platform = SERVED[config.format]
    record = config.latest()
    suffix = Path(platform.default_file).suffix
    artifact = next((f.path for f in record.files if Path(f.path).suffix == suffix), record.files[0].path)
    variant = out / config.name
    if variant.exists():
        shutil.rmtree(variant)  # a stale version from an earlier run must not be served beside this one
    variant.mkdir(parents=True)
    pbtxt = variant / "config.pbtxt"
    pbtxt.write_text(config_pbtxt(config, platform, artifact, settings))
    source = repository.version_dir(config.name, record.version)
    return [pbtxt, *(link_or_copy(source / f.path, variant / str(record.version) / f.path) for f in record.files)]


def unsupported(configs: list[VariantConfig], out: Path) -> list[Path]:
    rows = [{"variant": c.name, "format": c.format, "reason": WHY_NOT.get(c.format, f"no Triton backend for "
                                                                            f"the '{c.format}' format")}
            for c in configs if c.format not in SERVED]
    lines = ["# Variants Triton cannot serve", "",
             "Written by `crossdeploy deploy triton`; the crossdeploy gateway serves every one of them.", "",
             "| Variant | Format | Why not |", "| --- | --- | --- |"]
    lines += [f"| {r['variant']} | {r['format']} | {r['reason']} |" for r in rows]
    markdown = out / "UNSUPPORTED.md"
    markdown.write_text("\n".join(lines) + "\n")
    listing = out / "unsupported.json"
    listing.write_text(json.dumps(rows, indent=1) + "\n")
    return [markdown, listing]


def generate(configs: list[VariantConfig], root: Path, out: Path, *, settings: Settings) -> list[Path]:
    target = folder(out, "triton")
    models = folder(target, "model_repository")
    repository = ModelRepository(root)
    written: list[Path] = []
    for config in configs:
        if config.format in SERVED:
            written += served(repository, config, models, settings)
    return written + unsupported(configs, target)

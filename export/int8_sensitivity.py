"""int8 per layer, for onnxruntime static QDQ and TFLite PTQ variants: which node costs the most when quantized,
and what keeping the most sensitive ones in float buys back.

Every candidate is re-quantized from the variant's own source (the float ONNX sibling; for TFLite, the Keras model,
see int8_tflite.py) with the shipped settings and the model spec's own calibration inputs, so the only thing that
changes between candidates is the set of quantized nodes:
- alone: `nodes_to_quantize=[node]`, every other node left float: the error that node contributes by itself;
- keep-float N: `nodes_to_exclude=` the N most sensitive nodes, everything else quantized as shipped.
Each candidate runs through the runtime adapter on the model's parity samples and is compared with the float sibling
variant (torch-onnx for torch-onnx-int8, keras-tflite for keras-tflite-int8): max/mean abs logit diff, top-1
agreement; and with the labels (accuracy).
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from crossdeploy.errors import CrossdeployError
from crossdeploy.repository import ModelRepository, VariantConfig, VersionRecord, record_files

from .quantize import prepare, quantize_qdq

Samples = tuple[np.ndarray, "np.ndarray | None", np.ndarray]  # parity inputs, their labels, calibration inputs
FLOAT_SOURCE_SUFFIX = "-int8"  # torch-onnx-int8 is quantized from the torch-onnx variant's file (see pathways.py)


@dataclass
class Measure:
    """One candidate's outputs against the float model's, and its predictions against the labels."""

    max_abs: float
    mean_abs: float
    agreement: float
    accuracy: float | None
    size: int  # bytes of the model file


@dataclass
class LayerError:
    node: str
    op_type: str
    quantized: bool  # False: ORT inserted no Q/DQ for this node alone (it quantizes only behind a quantized input)
    measure: Measure


@dataclass
class CurvePoint:
    keep_float: int
    kept: list[str]  # the nodes left in float, most sensitive first
    measure: Measure


@dataclass
class Sensitivity:
    variant: str
    float_variant: str
    model: str
    samples: int
    calibration: int
    float_accuracy: float | None
    float_size: int
    shipped: Measure  # the variant as it is in the repository
    requantized_vs_shipped_max_abs: float  # keep-float 0 against the shipped file: 0 when the settings match
    layers: list[LayerError] = field(default_factory=list)  # most sensitive first
    curve: list[CurvePoint] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def default_counts(nodes: int) -> list[int]:
    """0, 1, 2, 4, ... and all-but-one and all: the spread a user picks a trade-off from."""
    counts = {0, nodes - 1, nodes} | {2 ** k for k in range(nodes.bit_length()) if 2 ** k < nodes}
    return sorted(c for c in counts if 0 <= c <= nodes)


def _measure(logits: np.ndarray, reference: np.ndarray, labels: np.ndarray | None, size: int) -> Measure:
    diff = np.abs(logits.astype(np.float64) - reference.astype(np.float64))
    predicted = logits.argmax(-1)
    return Measure(max_abs=float(diff.max()), mean_abs=float(diff.mean()),
                   agreement=float((predicted == reference.argmax(-1)).mean()),
                   accuracy=None if labels is None else float((predicted == labels).mean()), size=size)


class Quantizer:
    """Re-quantizes one float ONNX model with onnxruntime's static QDQ and the shipped settings."""

    file = "model.onnx"

    def __init__(self, float_path: Path, config: VariantConfig, calibration: np.ndarray, work: Path):
        self.config = config
        self.calibration = calibration.astype(np.float32)
        self.work = work
        work.mkdir(parents=True, exist_ok=True)
        # The same pre-processing as the shipped variant, so node names and graph match what it quantized.
        self.prepared = prepare(float_path, work / "prepared.onnx")
        self._count = 0

    def quantizable(self) -> list[tuple[str, str]]:
        """(name, op type) of every node quantize_static considers, in graph order: its default op types are both
        registries (QDQ-specific rules and the QLinear ops, e.g. Add, Mul, Softmax, quantized with plain Q/DQ)."""
        import onnx
        from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

        graph = onnx.load(str(self.prepared)).graph
        ops = set(QDQRegistry) | set(QLinearOpsRegistry)
        return [(n.name, n.op_type) for n in graph.node if n.op_type in ops]

    def quantize(self, nodes_to_quantize: list[str] | None = None, nodes_to_exclude: list[str] | None = None) -> Path:
        self._count += 1
        folder = self.work / f"candidate-{self._count}"
        folder.mkdir()
        quantize_qdq(self.prepared, folder / "model.onnx", self.config.inputs[0].name, self.calibration,
                     nodes_to_quantize=nodes_to_quantize, nodes_to_exclude=nodes_to_exclude)
        return folder

    def is_quantized(self, folder: Path) -> bool:
        import onnx

        return any(n.op_type == "QuantizeLinear" for n in onnx.load(str(folder / self.file)).graph.node)


def run_folder(config: VariantConfig, folder: Path, x: np.ndarray) -> np.ndarray:
    """The first output of the ONNX file in `folder`, through the same adapter the gateway serves it with."""
    from crossdeploy.runtimes import runtime_class

    record = VersionRecord(version=1, created=datetime.now(timezone.utc), files=record_files(folder))
    runtime = runtime_class(config.format)(config, record, folder, threads=1).load()
    try:
        return next(iter(runtime.predict({config.inputs[0].name: x}).values()))
    finally:
        runtime.unload()


def resolve(repository: ModelRepository, variant: str) -> tuple[VariantConfig, VariantConfig]:
    """The int8 variant's config and its float ONNX sibling's, or a one-line reason why there is none."""
    if variant not in repository.names():
        raise CrossdeployError(f"variant '{variant}' is not in the repository {repository.root}")
    config = repository.config(variant)
    if config.precision != "int8" or config.format not in ("onnx", "tflite"):
        raise CrossdeployError(f"sensitivity needs an int8 ONNX or TFLite variant; '{variant}' is "
                               f"{config.precision} {config.format}")
    source = config.pathway.removesuffix(FLOAT_SOURCE_SUFFIX)
    siblings = [c for c in repository.list() if c.model == config.model and c.pathway == source and c.precision != "int8"]
    if not siblings:
        raise CrossdeployError(f"'{variant}' is quantized from the {source} pathway of {config.model}, "
                               "which is not in the repository")
    return config, siblings[0]


def samples_for(model: str) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """The model's parity samples, labels and int8 calibration inputs, from its built-in spec."""
    from .modelspec import load_spec
    from .spec import BUILTIN_SPECS

    for path in sorted(BUILTIN_SPECS.glob("*.toml")):
        loaded = load_spec(path, require_weights=False)
        if loaded.spec.name == model:
            return next(iter(loaded.x.values())), loaded.y, loaded.calibration
    raise CrossdeployError(f"no built-in spec for model '{model}': its samples and calibration are unknown")


def make_quantizer(repository: ModelRepository, config: VariantConfig, float_dir: Path, calibration: np.ndarray,
                   work: Path):
    if config.format == "tflite":
        from .int8_tflite import TfliteQuantizer

        return TfliteQuantizer(repository, config, calibration, work)
    return Quantizer(float_dir / Quantizer.file, config, calibration, work)


def rank_layers(quantizer, x: np.ndarray, reference: np.ndarray, y: np.ndarray | None) -> list[LayerError]:
    """Each quantizable node quantized alone, most sensitive (largest mean abs logit error) first."""
    layers = []
    for name, op_type in quantizer.quantizable():
        folder = quantizer.quantize(nodes_to_quantize=[name])
        layers.append(LayerError(name, op_type, quantizer.is_quantized(folder), _measure(
            run_folder(quantizer.config, folder, x), reference, y, _size(folder / quantizer.file))))
    layers.sort(key=lambda layer: (-layer.measure.mean_abs, -layer.measure.max_abs, not layer.quantized))
    return layers


def measure(repository: ModelRepository, variant: str, keep_float: list[int] | None = None,
            limit: int | None = None, models: Path | None = None, samples: Samples | None = None,
            up_to: int | None = None) -> Sensitivity:
    """Per-layer errors (ranked) and the keep-float curve of one int8 variant; `limit` takes the first samples.
    With `models`, each curve point's quantized file is kept in models/keep_float_<N>/, ready to ship.
    `samples`: (parity inputs, labels, calibration inputs) of a user's spec; default the built-in spec's.
    `up_to`: the curve is every N from 0 to this many nodes kept float (fewer if the model has fewer)."""
    config, float_config = resolve(repository, variant)
    x, y, calibration = samples if samples is not None else samples_for(config.model)
    if limit is not None:
        x, y = x[:limit], None if y is None else y[:limit]
    float_dir = repository.version_dir(float_config.name, repository.get(float_config.name)[1].version)
    shipped_dir = repository.version_dir(variant, repository.get(variant)[1].version)
    with tempfile.TemporaryDirectory(prefix="crossdeploy-int8-") as tmp:
        quantizer = make_quantizer(repository, config, float_dir, calibration, Path(tmp))
        reference = run_folder(float_config, float_dir, x)
        shipped = run_folder(config, shipped_dir, x)
        nodes = quantizer.quantizable()
        too_many = [c for c in keep_float or [] if c > len(nodes)]
        if too_many:
            raise CrossdeployError(f"--keep-float {too_many[0]}: '{variant}' has only {len(nodes)} quantizable nodes")
        layers = rank_layers(quantizer, x, reference, y)
        # Nodes that take no Q/DQ alone (Relu, MaxPool, Reshape...) follow their neighbours: the default spread
        # counts the nodes that do, then all nodes (a chain of such nodes quantized together still takes Q/DQ).
        effective = sum(layer.quantized for layer in layers)
        counts = default_counts(effective) + [len(layers)] if keep_float is None else keep_float
        if up_to is not None:
            counts = list(range(min(up_to, len(layers)) + 1))
        curve, requantized = [], None
        for count in sorted(set(counts)):
            kept = [layer.node for layer in layers[:count]]
            folder = quantizer.quantize(nodes_to_exclude=kept)
            logits = run_folder(config, folder, x)
            requantized = logits if count == 0 else requantized
            curve.append(CurvePoint(count, kept, _measure(logits, reference, y, _size(folder / quantizer.file))))
            if models is not None:
                shutil.copytree(folder, models / f"keep_float_{count}", dirs_exist_ok=True)
        if requantized is None:
            requantized = run_folder(config, quantizer.quantize(), x)
    float_accuracy = None if y is None else float((reference.argmax(-1) == y).mean())
    return Sensitivity(
        variant=variant, float_variant=float_config.name, model=config.model, samples=len(x),
        calibration=len(calibration), float_accuracy=float_accuracy,
        float_size=_size(float_dir / quantizer.file), shipped=_measure(shipped, reference, y,
                                                                      _size(shipped_dir / quantizer.file)),
        requantized_vs_shipped_max_abs=float(np.abs(requantized - shipped).max()), layers=layers, curve=curve)


def _size(path: Path) -> int:
    return path.stat().st_size


def run_sensitivity(repository: Path | ModelRepository, variant: str, out: Path, keep_float: list[int] | None = None,
                    limit: int | None = None, samples: Samples | None = None, up_to: int | None = None) -> Path:
    """Measures `variant` and writes sensitivity.json/.md/.png, keep_float.png and models/keep_float_<N>/ into
    `out`; returns `out`."""
    from .int8_report import write_report

    out = Path(out)
    repo = repository if isinstance(repository, ModelRepository) else ModelRepository(repository)
    result = measure(repo, variant, keep_float, limit, models=out / "models", samples=samples, up_to=up_to)
    return write_report(result, out)

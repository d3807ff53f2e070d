"""Parity: every variant against its own source's eager reference, on the whole test split.

ONE `check_parity` serves every format: output names first, then shapes, then values; every failing
output is collected before the verdict. Values pass element-wise when |a-b| <= atol + rtol*|b| (a pure
relative error explodes near zero). Like Polygraphy, each report also gives the smallest atol (at rtol=0)
and the smallest rtol (at atol=0) that would have passed, so the margin is visible. A breach is always
fatal: `run_parity` raises ParityError after writing every report.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np

from crossdeploy.errors import CrossdeployError, ParityError

from .pathways import BY_NAME
from crossdeploy.repository import ModelRepository, OutputParity, ParityResult, Tolerance, VariantConfig, reference_of

REL_FLOOR = 1e-3  # max_rel divides by max(|b|, REL_FLOOR): logits this close to zero carry no relative meaning


def output_diff(name: str, candidate: np.ndarray, reference: np.ndarray) -> tuple[OutputParity, np.ndarray]:
    a = candidate.astype(np.float64)
    b = reference.astype(np.float64)
    diff = np.abs(a - b)
    magnitude = np.abs(b)
    with np.errstate(divide="ignore", invalid="ignore"):
        exact_rel = np.where(diff == 0, 0.0, diff / magnitude)
    stats = OutputParity(
        name=name, max_abs=float(diff.max()), mean_abs=float(diff.mean()),
        p50_abs=float(np.percentile(diff, 50)), p99_abs=float(np.percentile(diff, 99)),
        max_rel=float((diff / np.maximum(magnitude, REL_FLOOR)).max()),
        min_atol=float(diff.max()), min_rtol=float(exact_rel.max()),
    )
    return stats, diff


def check_parity(reference: dict[str, np.ndarray], candidate: dict[str, np.ndarray], tolerance: Tolerance,
                 labels: np.ndarray | None = None, variant: str = "candidate", reference_name: str = "reference",
                 ) -> ParityResult:
    failures: list[str] = []
    missing = [n for n in reference if n not in candidate]
    failures += [f"{variant}: output '{n}' is missing" for n in missing]
    stats: list[OutputParity] = []
    for name, expected in reference.items():
        if name in missing:
            continue
        got = candidate[name]
        if got.shape != expected.shape:
            failures.append(f"{variant}: output '{name}' has shape {list(got.shape)}, reference {list(expected.shape)}")
            continue
        if not np.isfinite(got).all():
            failures.append(f"{variant}: output '{name}' has {int((~np.isfinite(got)).sum())} non-finite values")
            continue
        if not np.isfinite(expected).all():  # NaN compares false to any bound: it would pass every check
            failures.append(f"{variant}: the reference {reference_name}'s output '{name}' has "
                            f"{int((~np.isfinite(expected)).sum())} non-finite values: nothing can be judged against it")
            continue
        result, diff = output_diff(name, got, expected)
        stats.append(result)
        breaches = tolerance.breaches(got, expected)
        if breaches:
            failures.append(
                f"{variant}: output '{name}' max abs diff {result.max_abs:.3g} > atol {tolerance.atol:g} "
                f"+ rtol {tolerance.rtol or 0.0:g}*|ref| at {breaches}/{diff.size} elements"
            )
    first = next(iter(reference))
    agreement = accuracy = reference_accuracy = None
    classes = reference[first].ndim == 2 and reference[first].shape[1] > 1  # argmax means something only here
    if not classes and tolerance.atol is None:
        failures.append(f"{variant}: output '{first}' {list(reference[first].shape)} has no classes to agree on, and "
                        "the tolerance compares no values (int8): give this variant an atol")
    if classes and first in candidate and candidate[first].shape == reference[first].shape:
        predicted, expected_class = candidate[first].argmax(-1), reference[first].argmax(-1)
        agreement = float((predicted == expected_class).mean())
        if labels is not None:
            accuracy = float((predicted == labels).mean())
            reference_accuracy = float((expected_class == labels).mean())
        if agreement < tolerance.min_agreement:
            failures.append(f"{variant}: argmax agreement {agreement:.2%} < {tolerance.min_agreement:.2%}")
        if tolerance.max_accuracy_drop is not None and accuracy is not None:
            drop = reference_accuracy - accuracy
            if drop > tolerance.max_accuracy_drop:
                failures.append(f"{variant}: accuracy drop {drop * 100:.2f} points > {tolerance.max_accuracy_drop * 100:.2f}")
    return ParityResult(
        passed=not failures, checked_at=datetime.now(timezone.utc), reference=reference_name,
        samples=len(next(iter(reference.values()))), outputs=stats, agreement=agreement,
        accuracy=accuracy, reference_accuracy=reference_accuracy, tolerance=tolerance, failures=failures,
    )


@dataclass
class VariantParity:
    config: VariantConfig
    version: int
    result: ParityResult
    diffs: np.ndarray  # |a-b| of the first output, flattened (for the distribution plot)


@dataclass
class ParityRun:
    variants: list[VariantParity]
    cross_framework_agreement: float | None  # argmax agreement of the two eager references
    samples: int

    @property
    def failures(self) -> list[str]:
        return [f for v in self.variants for f in v.result.failures]


def samples_by_model(specs) -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
    return {loaded.spec.name: (next(iter(loaded.x.values())), loaded.y) for loaded in specs}


def builtin_samples() -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
    """The built-in specs' samples (models/specs/*.toml), weights not needed."""
    from .modelspec import load_spec
    from .spec import BUILTIN_SPECS

    return samples_by_model(load_spec(p, require_weights=False) for p in sorted(BUILTIN_SPECS.glob("*.toml")))


def pathway_order(config: VariantConfig) -> tuple:
    order = {name: i for i, name in enumerate(BY_NAME)}
    return (config.model, order.get(config.pathway, len(order)), config.name)


def run_parity(repository: ModelRepository, variants: list[str] | None = None, threads: int = 2,
               tolerances: dict[str, dict] | None = None, write: bool = True, progress=None,
               samples: dict[str, tuple[np.ndarray, np.ndarray | None]] | None = None) -> ParityRun:
    """Runs every (or the named) variant on its model's samples (default: the built-in specs' test split) and
    writes each result into its config."""
    from crossdeploy.runtimes import open_runtime

    unknown = [n for n in variants or [] if n not in repository.names()]
    if unknown:
        raise CrossdeployError(f"variant(s) not in the repository {repository.root}: {', '.join(unknown)}")
    strangers = sorted(set(tolerances or {}) - set(repository.names()))
    if strangers:  # a misspelt override would otherwise leave the default in force without a word
        raise CrossdeployError(f"tolerance override(s) for variant(s) not in the repository {repository.root}: "
                               f"{', '.join(strangers)}")
    samples = samples if samples is not None else builtin_samples()
    configs = repository.list()
    chosen = [c for c in configs if (not variants or c.name in variants) and c.model in samples]
    if variants and len(chosen) < len(variants):
        missing = sorted(set(variants) - {c.name for c in chosen})
        raise CrossdeployError(f"no samples for the model(s) of {', '.join(missing)}: give their spec")
    chosen.sort(key=pathway_order)
    references = {c.name: reference_of(c, configs) for c in chosen}
    lacking = [n for n, r in references.items() if r is None]
    if lacking:
        raise CrossdeployError(f"no eager reference variant in the repository for {', '.join(lacking)}")
    outputs: dict[str, tuple] = {}
    for name in dict.fromkeys([c.name for c in chosen] + list(references.values())):
        model = repository.config(name).model
        runtime = open_runtime(repository, name, threads=threads).load()
        try:
            outputs[name] = (runtime.config, runtime.version.version, runtime.predict({runtime.config.inputs[0].name: samples[model][0]}))
        finally:
            runtime.unload()
        if progress:
            progress(name)
    results = []
    for config in chosen:
        _, version, got = outputs[config.name]
        reference = references[config.name]
        tolerance = config.tolerance.overridden((tolerances or {}).get(config.name, {}))
        labels = samples[config.model][1]
        result = check_parity(outputs[reference][2], got, tolerance, labels, variant=config.name, reference_name=reference)
        first = config.outputs[0].name
        diffs = np.abs(got[first].astype(np.float64) - outputs[reference][2][first]).ravel()
        results.append(VariantParity(config, version, result, diffs))
        if write:
            repository.set_parity(config.name, version, result)
    cross = None
    eager = {}
    for config in chosen:
        if references[config.name] == config.name:
            eager.setdefault(config.model, {})[config.source_framework] = outputs[config.name][2][config.outputs[0].name]
    pairs = [e for e in eager.values() if len(e) == 2]
    if pairs:
        cross = float((pairs[0]["pytorch"].argmax(-1) == pairs[0]["keras"].argmax(-1)).mean())
    return ParityRun(results, cross, len(next(iter(samples.values()))[0]))


def raise_on_failure(run: ParityRun) -> None:
    if run.failures:
        raise ParityError(run.failures)


__all__ = ["ParityRun", "check_parity", "raise_on_failure", "run_parity"]

"""train -> export -> parity, each a library function the CLI calls with the same keyword names."""

from __future__ import annotations

import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console

from crossdeploy.errors import ConfigError, CrossdeployError
from crossdeploy.framework_log import child_streams
from crossdeploy.repository import ModelRepository
from crossdeploy.repository import Tolerance

# Wide enough for the parity table when output is piped (CI logs); a terminal keeps its own width.
console = Console(width=None if sys.stdout.isatty() else 200)


@dataclass
class StageTimes:
    seconds: dict[str, float] = field(default_factory=dict)

    def run(self, name: str, fn, *args, **kwargs):
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            self.seconds[name] = time.perf_counter() - start


def train(workdir: Path, epochs: int = 30, seed: int = 0) -> list:
    """Trains the built-in models: digits-cnn and digits-transformer, each in both frameworks."""
    from crossdeploy.models.train import BUILTINS, train_builtin

    results = []
    for builtin in BUILTINS:
        r = train_builtin(builtin, workdir / "trained", epochs, seed)
        results.append(r)
        console.print(f"{r.model:18} {r.framework:8} test accuracy {r.test_accuracy:.2%} after {r.epochs} epochs "
                      f"({r.seconds:.1f} s) -> {r.path}")
    return results


PIPELINE_MODELS = ("digits-cnn",)  # the built-in specs the pipeline exports and serves (models/specs/)


def export(repository: Path, workdir: Path, variants: list[str] | None = None, keep_versions: int = 2):
    """Exports the pipeline's built-in specs (the digits CNN in both frameworks) along every pathway."""
    from crossdeploy.export.exporting import builtin_specs, export_all, raise_failures

    repo = ModelRepository(repository, keep_versions)
    outcomes = export_all(repo, builtin_specs(PIPELINE_MODELS, workdir), variants)
    for o in outcomes:
        if o.error:
            console.print(f"[bold red]✗ {o.name:18}[/] export failed: {o.error}")
        else:
            state = "new version" if o.added else "unchanged"
            console.print(f"✓ {o.name:18} v{o.version} {state:11} {o.size / 1024:8.0f} KB  {o.seconds:5.1f} s")
    raise_failures(outcomes)
    return outcomes


def export_in_fresh_process(repository: Path, workdir: Path, variants: list[str] | None = None,
                            keep_versions: int = 2) -> None:
    """`export` in a new interpreter. Converters name graph functions and TorchScript classes from
    process-wide counters, so an export that follows training in the same process writes different bytes
    than `crossdeploy export` would, and the repository would store a needless new version."""
    command = [sys.executable, "-m", "crossdeploy.cli", "export", "--repository", str(repository),
               "--workdir", str(workdir), "--keep-versions", str(keep_versions)]
    for name in variants or []:
        command += ["--variant", name]
    if subprocess.run(command, **child_streams()).returncode != 0:
        raise CrossdeployError("the export stage failed (its error is printed above)")


def load_tolerances(path: Path | None) -> dict[str, dict]:
    """A TOML file of per-variant overrides, [torch-tflite] atol = 2e-4 ...: per variant, the fields it sets (each
    checked), which replace only those fields of the variant's own tolerance."""
    if path is None:
        return {}
    try:
        table = tomllib.loads(path.read_text())
        overrides = {}
        for name, values in table.items():
            if not isinstance(values, dict):
                raise ValueError(f"'{name}' must be a table: [{name}] atol = ...")
            checked = Tolerance.model_validate(values)
            overrides[name] = {field: getattr(checked, field) for field in checked.model_fields_set}
        return overrides
    except (OSError, tomllib.TOMLDecodeError, TypeError, ValueError) as exc:
        raise ConfigError(str(path), f"tolerances file does not parse: {str(exc).splitlines()[0]}") from exc


def parity(repository: Path, workdir: Path, variants: list[str] | None = None, tolerances: Path | None = None,
           threads: int = 2):
    from rich.progress import Progress

    from crossdeploy.export.parity import raise_on_failure, run_parity
    from crossdeploy.export.reports import print_table, write_reports

    repo = ModelRepository(repository)
    overrides = load_tolerances(tolerances)
    with Progress(transient=True) as progress:
        task = progress.add_task("parity: run every variant on the test split", total=None)
        run = run_parity(repo, variants, threads, overrides, progress=lambda n: progress.update(task, description=f"parity: ran {n}"))
    print_table(run, console)
    paths = write_reports(run, workdir / "reports" / "parity")
    console.print(f"reports: {paths['markdown']}, {paths['json']}, {paths['png']}")
    diagnose_failures(repo, run, workdir)
    return run


def diagnose_failures(repo: ModelRepository, run, workdir: Path) -> None:
    """Raises the parity failures, each failing variant's first divergence with them where diverge can follow
    its chain (its report under <workdir>/reports/diverge/<variant>/)."""
    from crossdeploy.export.diverge import first_divergence
    from crossdeploy.export.parity import raise_on_failure

    if not run.failures:
        return
    for failing in (v for v in run.variants if v.result.failures):
        name = failing.config.name
        try:
            found = first_divergence(repo, name, workdir / "reports" / "diverge" / name)
        except CrossdeployError as exc:
            found = f"{name}: the layer-by-layer diagnosis failed: {exc}"
        if found:
            failing.result.failures.append(found)
    raise_on_failure(run)


def pipeline(repository: Path, workdir: Path, epochs: int = 30, seed: int = 0, keep_versions: int = 2,
             threads: int = 2, tolerances: Path | None = None) -> StageTimes:
    times = StageTimes()
    try:
        times.run("train", train, workdir, epochs, seed)
        times.run("export", export_in_fresh_process, repository, workdir, None, keep_versions)
        times.run("parity", parity, repository, workdir, None, tolerances, threads)
    finally:
        total = sum(times.seconds.values())
        console.print("stage times: " + ", ".join(f"{k} {v:.0f} s" for k, v in times.seconds.items()) + f", total {total:.0f} s")
    return times


def matrix(specs: list[Path] | None, workdir: Path, out: Path | None = None, pathways: list[str] | None = None,
           timeout: float = 600.0, threads: int = 2, junit: Path | None = None, register: Path | None = None,
           latency: bool = True, int8_keep_float: int | None = None, remedies: list[str] | None = None):
    """Every applicable pathway on every spec (default: the built-in specs), as a deployability report."""
    from crossdeploy.export.matrix import load_specs, run_matrix
    from crossdeploy.export.matrix_report import print_table, write_reports
    from crossdeploy.export.spec import BUILTIN_SPECS

    # The built-ins: per model, PyTorch first (as the pipeline and the parity table order them).
    paths = list(specs) if specs else sorted(BUILTIN_SPECS.glob("*.toml"), key=lambda p: (p.stem.rsplit("-", 1)[0], "keras" in p.stem))
    loaded = load_specs(paths, workdir)  # SpecError (exit 2) before anything is written
    target = ModelRepository(register) if register is not None else None
    run = run_matrix(loaded, out or workdir / "reports" / "matrix", workdir, pathways, timeout, threads, target, latency,
                     int8_keep_float, remedies)
    print_table(run, console)
    written = write_reports(run, out or workdir / "reports" / "matrix", junit)
    console.print("reports: " + ", ".join(str(p) for p in written.values()))
    if run.registered:
        from crossdeploy.export.matrix_register import import_warnings

        console.print(f"registered into {register}: {', '.join(run.registered)} "
                      "(a gateway started with --model-control-mode explicit loads each with POST "
                      "/v2/repository/models/<name>/load and the management token)")
        for warning in import_warnings(loaded, run.registered, target):
            console.print(f"[yellow]! {warning}")
    failures = run.required_failures
    if failures:
        raise CrossdeployError(f"{len(failures)} required pathway(s) failed: "
                               + ", ".join(f"{r.model} ({r.framework}) {r.pathway}: {r.status}" for r in failures))
    return run

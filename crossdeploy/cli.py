"""`crossdeploy train | export | parity | pipeline | matrix | diverge | sensitivity | serve | deploy | digest | bench | docs`: each parses and calls one library
function, with the frameworks' own output sent to <workdir>/logs/<command>.log (see framework_log)."""

from __future__ import annotations

import enum
import sys
from pathlib import Path
from typing import Annotated, Optional

import click
import typer

import crossdeploy  # noqa: F401  (sets the cache/telemetry environment before any framework import)
from crossdeploy.errors import ConfigError, CrossdeployError, InvalidInput, ModelNotFound, RepositoryError
from crossdeploy.framework_log import framework_output_to, last_log
from crossdeploy.settings import Settings

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Every PyTorch and TensorFlow deployment pathway: exported, checked for parity, served, timed.")
S = Settings()

Repository = Annotated[Path, typer.Option(help="Model repository root (CROSSDEPLOY_REPOSITORY).")]
Workdir = Annotated[Path, typer.Option(help="Trained weights and reports (CROSSDEPLOY_WORKDIR).")]
Variants = Annotated[Optional[list[str]], typer.Option("--variant", "-v", help="Only this variant (repeatable).")]
Seed = Annotated[int, typer.Option(help="Seed of the data split and training.")]
Epochs = Annotated[int, typer.Option(min=1, help="Training epochs per framework.")]
Keep = Annotated[int, typer.Option(min=1, help="Versions kept per variant; older ones are pruned.")]
Threads = Annotated[int, typer.Option(min=1, help="Intra-op threads per runtime.")]
Tolerances = Annotated[Optional[Path], typer.Option(help="TOML of per-variant tolerance overrides.")]
ModelControl = enum.Enum("ModelControl", {"none": "none", "explicit": "explicit"}, type=str)
Engine = enum.Enum("Engine", {"inprocess": "inprocess", "ray": "ray"}, type=str)
# Errors the user's own input explains in full; any other error names the frameworks' log, where the cause may be.
INPUT_ERRORS = (ConfigError, RepositoryError, ModelNotFound, InvalidInput)


def quiet(workdir: Path, command: str):
    return framework_output_to(Path(workdir) / "logs" / f"{command}.log")


def uvicorn_lines_to_terminal() -> None:
    """uvicorn resolves its handlers' "ext://sys.stderr" when it starts, when sys.stderr is the frameworks' log;
    its own lines (the address it serves, a port already in use) belong on the terminal."""
    from uvicorn.config import LOGGING_CONFIG

    for handler in LOGGING_CONFIG["handlers"].values():
        handler["stream"] = handler["stream"].replace("ext://sys.std", "ext://crossdeploy.framework_log.terminal_std")


@app.command()
def train(workdir: Workdir = S.workdir, epochs: Epochs = S.epochs, seed: Seed = S.seed):
    """Train the built-in models (digits CNN, digits transformer) in PyTorch and Keras on one seeded split."""
    from crossdeploy.pipeline import train as run

    with quiet(workdir, "train"):
        run(workdir=workdir, epochs=epochs, seed=seed)


@app.command()
def export(repository: Repository = S.repository, workdir: Workdir = S.workdir, variant: Variants = None,
           keep_versions: Keep = S.keep_versions):
    """Export the trained digits CNN (both frameworks) along every pathway into the model repository."""
    from crossdeploy.pipeline import export as run

    with quiet(workdir, "export"):
        run(repository=repository, workdir=workdir, variants=variant, keep_versions=keep_versions)


@app.command()
def parity(repository: Repository = S.repository, workdir: Workdir = S.workdir, variant: Variants = None,
           tolerances: Tolerances = None, threads: Threads = S.threads):
    """Check every variant against its eager reference on its spec's samples; exit 1 on any breach."""
    from crossdeploy.pipeline import parity as run

    with quiet(workdir, "parity"):
        run(repository=repository, workdir=workdir, variants=variant, tolerances=tolerances, threads=threads)


@app.command()
def pipeline(repository: Repository = S.repository, workdir: Workdir = S.workdir, epochs: Epochs = S.epochs,
             seed: Seed = S.seed, keep_versions: Keep = S.keep_versions, threads: Threads = S.threads,
             tolerances: Tolerances = None):
    """train, export and parity in one go, with the time of each stage."""
    from crossdeploy.pipeline import pipeline as run

    with quiet(workdir, "pipeline"):
        run(repository=repository, workdir=workdir, epochs=epochs, seed=seed, keep_versions=keep_versions,
            threads=threads, tolerances=tolerances)


@app.command()
def matrix(specs: Annotated[Optional[list[Path]], typer.Argument(help="Model spec files (TOML); default: the built-in specs.", show_default=False)] = None,
           workdir: Workdir = S.workdir,
           out: Annotated[Optional[Path], typer.Option(help="Report folder (default: <workdir>/reports/matrix).")] = None,
           pathway: Annotated[Optional[list[str]], typer.Option("--pathway", "-p", help="Only this pathway (repeatable).")] = None,
           timeout: Annotated[float, typer.Option(min=1.0, help="Seconds one step (an export, a conversion, a load, a run) may take before it is killed.")] = 600.0,
           junit: Annotated[Optional[Path], typer.Option(help="Also write each pathway as a JUnit XML test case here.")] = None,
           register: Annotated[bool, typer.Option(help="Copy the passing variants into the model repository (--repository).")] = False,
           repository: Repository = S.repository, threads: Threads = S.threads,
           latency: Annotated[bool, typer.Option(help="Measure the in-process p50 at batch 1 of every passing variant.")] = True,
           int8_keep_float: Annotated[Optional[int], typer.Option(min=0, max=64, metavar="N", help="For each int8 pathway, also re-quantize with 0..N of its most sensitive nodes kept float and report accuracy, agreement and size per N (overrides the spec's int8_keep_float).")] = None,
           remedies: Annotated[bool, typer.Option(help="Try a failed pathway again with the remedies its tools document (docs/remedies.md).")] = True,
           remedy: Annotated[Optional[list[str]], typer.Option("--remedy", help="Only this remedy (repeatable; names in docs/remedies.md).")] = None):
    """Run every pathway on each model spec: a deployability report; exit 1 if a required pathway fails, 2 on a bad spec."""
    from crossdeploy.pipeline import matrix as run

    with quiet(workdir, "matrix"):
        run(specs=specs, workdir=workdir, out=out, pathways=pathway, timeout=timeout, threads=threads, junit=junit,
            register=repository if register else None, latency=latency, int8_keep_float=int8_keep_float,
            remedies=(remedy or None) if remedies else [])


@app.command()
def diverge(variant: Annotated[str, typer.Argument(help="The variant whose conversion chain is followed layer by layer.")],
            repository: Repository = S.repository, workdir: Workdir = S.workdir,
            out: Annotated[Optional[Path], typer.Option(help="Report folder (default: <workdir>/reports/diverge/<variant>).")] = None,
            samples: Annotated[int, typer.Option(min=1, help="Parity samples run through every hop.")] = 64,
            inputs: Annotated[Optional[Path], typer.Option(metavar="PATH", help="Run these inputs instead (a .npy array shaped like the variant's input, batch first), e.g. one drawn digit.")] = None):
    """Where along a variant's chain the numbers first leave the tolerance: per hop, per layer; JSON, Markdown, a PNG."""
    from crossdeploy.export.diverge import run_diverge

    x = _npy(inputs) if inputs is not None else None
    with quiet(workdir, "diverge"):
        folder = run_diverge(repository, variant, out or Path(workdir) / "reports" / "diverge" / variant, samples=samples,
                             inputs=x)
    print(folder)


def _npy(path: Path):
    import numpy as np

    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise CrossdeployError(f"--inputs {path}: not a readable .npy array ({exc})") from None
    if array.ndim < 2 or not np.issubdtype(array.dtype, np.number) or not np.isfinite(array).all():
        raise CrossdeployError(f"--inputs {path}: want a finite numeric array with a batch axis first, got {array.dtype} {array.shape}")
    return array  # diverge checks it against the variant's signature and casts it to its datatype


@app.command()
def sensitivity(variant: Annotated[str, typer.Argument(help="An int8 variant (torch-onnx-int8: onnxruntime QDQ; keras-tflite-int8: TFLite PTQ).")],
                repository: Repository = S.repository, workdir: Workdir = S.workdir,
                out: Annotated[Optional[Path], typer.Option(help="Report folder (default: <workdir>/reports/sensitivity/<variant>).")] = None,
                keep_float: Annotated[Optional[str], typer.Option(help="Comma-separated counts of the most sensitive layers kept in float (default: a spread).")] = None):
    """int8 per layer: the error of quantizing each layer alone, ranked, and the accuracy/size curve of keeping the top N in float."""
    from crossdeploy.export.int8_sensitivity import run_sensitivity

    counts = None
    if keep_float:
        parts = [p.strip() for p in keep_float.split(",") if p.strip()]
        if not all(p.isdigit() for p in parts):
            raise InvalidInput(f"--keep-float takes counts separated by commas, got '{keep_float}'")
        counts = [int(p) for p in parts]
    with quiet(workdir, "sensitivity"):
        folder = run_sensitivity(repository, variant, out or Path(workdir) / "reports" / "sensitivity" / variant, keep_float=counts)
    print(folder)


@app.command()
def serve(host: Annotated[str, typer.Option(help="Address to bind (CROSSDEPLOY_HOST).")] = S.host,
          port: Annotated[int, typer.Option(min=1, max=65535, help="Port (CROSSDEPLOY_PORT).")] = S.port,
          repository: Repository = S.repository, threads: Threads = S.serve_threads,
          max_in_flight: Annotated[int, typer.Option(min=1, help="Requests in flight before 503.")] = S.max_in_flight,
          retry_after: Annotated[int, typer.Option(min=0, help="Retry-After seconds of a 503 for too many in flight.")] = S.retry_after_s,
          admission_wait_ms: Annotated[float, typer.Option(min=0.0, help="How long a request beyond the bound waits for a slot before 503.")] = S.admission_wait_ms,
          max_waiting: Annotated[int, typer.Option(min=0, help="Requests that may wait for a slot at once.")] = S.max_waiting,
          max_queue_ms: Annotated[float, typer.Option(min=0.001, help="Estimated work one variant may queue before 503.")] = S.max_queue_ms,
          executor_slots: Annotated[int, typer.Option(min=0, help="Executor calls at once across variants (0: unbounded).")] = S.executor_slots,
          header_timeout: Annotated[float, typer.Option(min=0.001, help="Seconds a request's headers may take (408).")] = S.header_timeout_s,
          body_timeout: Annotated[float, typer.Option(min=0.001, help="Seconds a request's body may take (408).")] = S.body_timeout_s,
          max_batch: Annotated[int, typer.Option(min=1, help="Largest batch per request.")] = S.max_batch,
          max_body_bytes: Annotated[int, typer.Option(min=1024, help="Largest request body (413 above).")] = S.max_body_bytes,
          inline_ms: Annotated[float, typer.Option(min=0.0, help="Run calls estimated below this on the event loop.")] = S.inline_ms,
          inference_timeout: Annotated[float, typer.Option(min=0.001, help="Seconds one inference may take before 504.")] = S.inference_timeout_s,
          model_control_mode: Annotated[ModelControl, typer.Option(help="explicit: load/unload work, with the management token (CROSSDEPLOY_MANAGEMENT_TOKEN, else generated into <workdir>/management_token); none: refused.")] = ModelControl(S.model_control_mode),
          expect_digest: Annotated[Optional[str], typer.Option(help="Refuse to start unless the repository has this digest (`crossdeploy digest`).", show_default=False)] = S.expect_digest,
          access_log: Annotated[bool, typer.Option(help="Log every request.")] = S.access_log,
          engine: Annotated[Engine, typer.Option(help="inprocess: one process holds every variant; ray: a Ray Serve application, one model deployment per runtime family (docs/scaling.md).")] = Engine(S.engine),
          address: Annotated[Optional[str], typer.Option(help="--engine ray: the Ray cluster to join (auto, host:port, ray://host:10001); default: a local one.", show_default=False)] = S.ray.address):
    """Serve every variant of the repository: KServe V2, TF Serving REST, TorchServe, /v1/compare, /metrics."""
    from crossdeploy.serving.app import serve as run

    settings = S.model_copy(update=dict(host=host, port=port, repository=repository, serve_threads=threads,
                                        max_in_flight=max_in_flight, retry_after_s=retry_after,
                                        admission_wait_ms=admission_wait_ms, max_waiting=max_waiting, max_queue_ms=max_queue_ms,
                                        executor_slots=executor_slots, header_timeout_s=header_timeout,
                                        body_timeout_s=body_timeout, max_batch=max_batch,
                                        max_body_bytes=max_body_bytes,
                                        inline_ms=inline_ms, inference_timeout_s=inference_timeout,
                                        model_control_mode=model_control_mode.value, expect_digest=expect_digest,
                                        access_log=access_log, engine=engine.value,
                                        ray=S.ray.model_copy(update=dict(address=address))))
    uvicorn_lines_to_terminal()
    with quiet(S.workdir, "serve"):
        run(settings)


DeployTarget = enum.Enum("DeployTarget", {"k8s": "k8s", "kserve": "kserve", "triton": "triton", "ray": "ray"}, type=str)


@app.command()
def deploy(target: Annotated[DeployTarget, typer.Argument(help="k8s: Deployment, Service, HPA, ConfigMap; kserve: ServingRuntime + InferenceService; triton: config.pbtxt per variant Triton serves itself; ray: the Serve config YAML for `serve deploy`.")],
           repository: Repository = S.repository,
           out: Annotated[Path, typer.Option(help="Folder the manifests are written to.")] = Path("build/deploy"),
           image: Annotated[Optional[str], typer.Option(help="The gateway image (default: the one docker/ builds).", show_default=False)] = None,
           storage_uri: Annotated[Optional[str], typer.Option(help="kserve: where the cluster finds the repository (default: a PVC URI).", show_default=False)] = None,
           per_variant: Annotated[bool, typer.Option(help="kserve: one InferenceService per variant instead of one per repository.")] = False):
    """Write what hands the repository to Kubernetes, KServe, Triton or a Ray cluster, generated from the repository itself."""
    if target.value == "ray":
        from crossdeploy.serving.ray_engine.config_file import write_config

        print(write_config(S.model_copy(update=dict(repository=repository)), out))
        return
    from crossdeploy.deploy import generate

    for path in generate(target.value, repository, out, settings=S, image=image, storage_uri=storage_uri,
                         per_variant=per_variant):
        print(path)


@app.command()
def digest(repository: Repository = S.repository):
    """Print the repository's digest: a sha256 over every variant's config and file digests (for serve --expect-digest)."""
    from crossdeploy.repository import ModelRepository

    found = ModelRepository(repository)
    if not found.exists() or not found.names():
        raise RepositoryError(f"model repository {repository} is missing or empty")
    print(found.digest())


@app.command()
def bench(repository: Repository = S.repository,
          out: Annotated[Path, typer.Option(help="Results root; each run writes a timestamped folder and `latest`.")] = Path("build/reports/bench"),
          quick: Annotated[bool, typer.Option(help="A smoke run of about a minute (4 variants, 1 repeat, short windows).")] = False,
          variants: Annotated[Optional[str], typer.Option(help="Comma-separated variants (default: all; --quick: 4).")] = None,
          protocols: Annotated[Optional[str], typer.Option(help="Comma-separated: v2-json,v2-binary,tfserving,torchserve.")] = None,
          repeats: Annotated[Optional[int], typer.Option(min=1, help="Runs per scenario (default 3; --quick 1).")] = None,
          url: Annotated[Optional[str], typer.Option(help="Measure this server instead of starting the gateway (no in-process part).")] = None,
          engines: Annotated[Optional[str], typer.Option(help="Comma-separated gateway engines to measure side by side: inprocess,ray (default: both on a full run; inprocess with --quick, --variants or --protocols).")] = None,
          concurrency: Annotated[Optional[str], typer.Option(help="Comma-separated closed-loop concurrencies of the gateway sweep (default 1,4,16,64).")] = None,
          runtimes: Annotated[Optional[str], typer.Option(help="Comma-separated other runtimes to time in process on the same files: openvino (ONNX variants).")] = None):
    """The latency comparison: in-process, cold start, and through the gateway; JSON, Markdown and PNGs."""
    from crossdeploy.bench.run import run_bench

    split = lambda text: [t.strip() for t in text.split(",") if t.strip()] if text else None  # noqa: E731

    def counts(text):
        found = split(text)
        if found and not all(t.isdigit() and int(t) > 0 for t in found):
            raise InvalidInput(f"--concurrency takes positive integers separated by commas, got '{text}'")
        return [int(t) for t in found] if found else None

    with quiet(S.workdir, "bench"):
        run_bench(repository, out, quick=quick, variants=split(variants), protocols=split(protocols), repeats=repeats, url=url,
                  engines=split(engines), concurrency=counts(concurrency), runtimes=split(runtimes))


@app.command()
def docs(workdir: Workdir = S.workdir,
         folder: Annotated[Path, typer.Option("--docs", help="The docs folder whose generated regions are filled.")] = Path("docs")):
    """Write the tables and figures in docs/ from the reports in <workdir>/reports (missing reports are tolerated)."""
    from crossdeploy.docs import shown, write_docs

    with quiet(workdir, "docs"):
        for filled in write_docs(folder, Path(workdir) / "reports"):
            print(f"{shown(filled.page)} [{filled.region}]: {filled.outcome}")


def main(argv: list[str] | None = None) -> int:
    try:
        app(args=argv, standalone_mode=False)
    except CrossdeployError as exc:
        log = None if isinstance(exc, INPUT_ERRORS) else last_log()
        print(f"crossdeploy: error: {exc}" + (f" (framework output: {log})" if log else ""), file=sys.stderr)
        return getattr(exc, "exit_code", 1)  # 2 for a model spec that cannot be used
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except (click.exceptions.Abort, KeyboardInterrupt):
        print("crossdeploy: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())


def entry() -> None:
    sys.exit(main())

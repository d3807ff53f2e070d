"""`make fuzz`: a longer fuzz than `make test`'s. A real gateway (a subprocess on a free loopback port, over a
private copy of the repository, with model control on and a random management token) is fuzzed by schemathesis
over every operation /openapi.json documents, with every check, positive and negative data; then the codecs'
Hypothesis properties run under the "fuzz" profile (tests/conftest.py) with many more examples.
Writes <out>/report.json and report.md (see fuzz_report.py); exits 1 when anything failed.

    python -m crossdeploy.bench.fuzz --repository model_repository [--examples 60] [--out build/reports/fuzz]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

from crossdeploy.errors import CrossdeployError

from . import fuzz_report
from .provenance import git_revision
from .servers import free_port, start, stop

ROOT = Path(__file__).resolve().parent.parent
HOOKS = "crossdeploy.bench.fuzz_hooks"
# Load and unload get a run of their own, last and shorter: each real load reopens every version of a variant
# (seconds each), and an unload takes the variant away from whatever is tested after it.
MUTATING = ("v2_repository_load", "v2_repository_unload")
RUN_TIMEOUT_S = 3 * 3600  # a bound, far beyond any sensible --examples, so a stuck run cannot run forever
ST_OPTIONS = ["--checks", "all", "--phases", "examples,coverage,fuzzing", "--mode", "all",
              "--generation-database", "none", "--no-color", "--workers", "1", "--request-timeout", "60"]


def arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m crossdeploy.bench.fuzz", description=__doc__.split("\n\n")[0])
    parser.add_argument("--repository", type=Path, default=Path("model_repository"), help="the built model repository")
    parser.add_argument("--examples", type=int, default=60,
                        help="schemathesis examples per operation in the fuzzing phase (load/unload get 1/20 of it)")
    parser.add_argument("--codec-examples", type=int, default=5000, help="Hypothesis examples per codec property")
    parser.add_argument("--seed", type=int, default=None, help="schemathesis seed (default: a random one, reported)")
    parser.add_argument("--out", type=Path, default=Path("build/reports/fuzz"), help="where the reports go")
    args = parser.parse_args(argv)
    if args.examples < 1 or args.codec_examples < 1:
        parser.error("--examples and --codec-examples must be at least 1")
    args.out = args.out.resolve()  # schemathesis runs in a scratch folder and writes its reports here
    return args


def stream(command: list[str], log: Path, env: dict[str, str], cwd: Path) -> tuple[int, str]:
    """Runs `command`, echoing its output as it comes (schemathesis and pytest report their own progress) and
    keeping it in `log`; (exit code, output)."""
    lines = []
    with open(log, "w") as out, subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                                 env=env, cwd=cwd) as process:
        deadline = time.monotonic() + RUN_TIMEOUT_S
        for line in process.stdout:
            print(line, end="", flush=True)
            out.write(line)
            lines.append(line)
            if time.monotonic() > deadline:
                process.kill()
                lines.append(f"killed after {RUN_TIMEOUT_S} s\n")
                break
    return process.wait(), "".join(lines)


def progress(events: Path, done: threading.Event) -> None:
    """One line per operation as schemathesis finishes it (its own output, off a terminal, only sums up phases)."""
    finished, offset, last = 0, 0, False
    while not last:
        last = done.wait(2)  # one more pass once the run is over: its last operations finish just before
        if not events.exists():
            continue
        with open(events, "rb") as stream_:
            stream_.seek(offset)
            for line in stream_:
                if not line.endswith(b"\n"):
                    break
                offset += len(line)
                if line.startswith(b'{"ScenarioFinished"'):
                    event = json.loads(line)["ScenarioFinished"]
                    recorder, finished = event.get("recorder", {}), finished + 1
                    print(f"  [{finished}] {event.get('phase', ''):>8} {event.get('status', ''):<8} "
                          f"{event.get('elapsed_time', 0):7.1f} s  {len(recorder.get('cases', {}))} cases  "
                          f"{recorder.get('label', '')}", flush=True)


def schemathesis_run(url: str, token: str, label: str, selection: list[str], examples: int, seed: int,
                     out: Path, scratch: Path) -> dict:
    report, events = out / f"schemathesis-{label}.json", scratch / f"events-{label}.ndjson"
    report.unlink(missing_ok=True)
    command = [str(Path(sys.executable).parent / "st"), "run", f"{url}/openapi.json",
               *ST_OPTIONS, "--seed", str(seed), "--max-examples", str(examples), *selection,
               "-H", f"Authorization: Bearer {token}", "--report", "json,junit,ndjson", "--report-json-path", str(report),
               "--report-junit-path", str(out / f"schemathesis-{label}.xml"), "--report-ndjson-path", str(events)]
    print(f"\n== schemathesis, {label}: {examples} examples per operation ==", flush=True)
    done = threading.Event()
    watcher = threading.Thread(target=progress, args=(events, done), daemon=True)
    watcher.start()
    try:
        code, _ = stream(command, out / f"schemathesis-{label}.log", {**os.environ, "SCHEMATHESIS_HOOKS": HOOKS}, scratch)
    finally:
        done.set()
        watcher.join()
    if not report.exists():
        return {"cases": 0, "operations": 0, "server_errors": 0, "schema_violations": 0,
                "failures": [f"{label}: schemathesis exited {code} without a report (see schemathesis-{label}.log)"]}
    return fuzz_report.schemathesis_figures(json.loads(report.read_text()), label)


def codec_properties(examples: int, out: Path) -> dict:
    junit = out / "codec-properties.xml"
    junit.unlink(missing_ok=True)
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--hypothesis-show-statistics",
               f"--junitxml={junit}", str(ROOT / "tests" / "test_codec_properties.py")]
    env = {**os.environ, "HYPOTHESIS_PROFILE": "fuzz", "CROSSDEPLOY_FUZZ_HYPOTHESIS_EXAMPLES": str(examples)}
    print(f"\n== codec properties: {examples} examples per property ==", flush=True)
    _, output = stream(command, out / "codec-properties.log", env, ROOT)
    return fuzz_report.pytest_figures(junit, output)


def served_name(url: str) -> str:
    """A ready variant, torch-onnx when it is one (it loads in a fraction of a second)."""
    with urllib.request.urlopen(f"{url}/v2/repository/index", data=b"{}", timeout=60) as response:
        names = sorted(m["name"] for m in json.loads(response.read()) if m.get("state") == "READY")
    if not names:
        raise CrossdeployError(f"the gateway at {url} serves no variant")
    return "torch-onnx" if "torch-onnx" in names else names[0]


def fuzz_gateway(args: argparse.Namespace, seed: int, scratch: Path) -> list[dict]:
    """Both schemathesis runs against one gateway; a gateway that died on the way is a failure of its own."""
    repository = scratch / "model_repository"
    shutil.copytree(args.repository, repository, ignore=shutil.ignore_patterns(".staging"))
    token, port = secrets.token_urlsafe(24), free_port()
    env = {**os.environ, "CROSSDEPLOY_MODEL_CONTROL_MODE": "explicit", "CROSSDEPLOY_MANAGEMENT_TOKEN": token,
           "CROSSDEPLOY_WORKDIR": str(scratch / "work")}
    print(f"starting the gateway on 127.0.0.1:{port} (log: {args.out / 'gateway.log'})", flush=True)
    server = start([sys.executable, "-m", "crossdeploy.cli", "serve", "--port", str(port), "--repository", str(repository)],
                   f"http://127.0.0.1:{port}/v2/health/ready", args.out / "gateway.log", env=env)
    url, runs = f"http://127.0.0.1:{port}", []
    # Load and unload in a folder whose schemathesis.toml names a served variant for every case: the hooks'
    # served names do not reach them, and a made-up name only ever gets the 404.
    managed = scratch / "load-unload"
    managed.mkdir()
    try:
        (managed / "schemathesis.toml").write_text(f'[parameters]\n"path.name" = "{served_name(url)}"\n')
        for label, selection, examples, folder in (
                ("operations", [f"--exclude-operation-id={op}" for op in MUTATING], args.examples, scratch),
                ("load-unload", [f"--include-operation-id={op}" for op in MUTATING], max(2, args.examples // 20), managed)):
            runs.append(schemathesis_run(url, token, label, selection, examples, seed, args.out, folder))
            if server.poll() is not None:
                runs[-1]["failures"].append(f"{label}: the gateway exited with {server.returncode} (see gateway.log)")
                break
    finally:
        stop([server])
    return runs


def main(argv: list[str] | None = None) -> int:
    args = arguments(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    seed = args.seed if args.seed is not None else secrets.randbelow(2**31)
    began = time.monotonic()
    try:
        with tempfile.TemporaryDirectory(prefix="crossdeploy-fuzz-") as scratch:
            runs = fuzz_gateway(args, seed, Path(scratch))
    except CrossdeployError as exc:
        print(f"fuzz: {exc}", file=sys.stderr)
        return 1
    codec = codec_properties(args.codec_examples, args.out)
    failures = [line for run in runs for line in run["failures"]] + codec["failures"]
    report = {
        "operations": sum(run["operations"] for run in runs), "examples_per_operation": args.examples,
        "cases": sum(run["cases"] for run in runs),
        "server_errors": sum(run["server_errors"] for run in runs),
        "schema_violations": sum(run["schema_violations"] for run in runs), "failures": failures,
        "duration_s": round(time.monotonic() - began, 1), "seed": seed,
        "command": " ".join(["python -m crossdeploy.bench.fuzz", *(argv if argv is not None else sys.argv[1:])]),
        "commit": git_revision(), "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "codec_properties": {"tests": codec["tests"], "examples": codec["examples"],
                             "examples_per_property": args.codec_examples},
    }
    fuzz_report.write(args.out, report)
    print(f"\nfuzz: {report['cases']} HTTP cases over {report['operations']} operations, {codec['examples']} codec "
          f"examples; {len(failures)} failure group(s); {args.out / 'report.md'}", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

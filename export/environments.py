"""Tools that run in an environment of their own: a venv built from a pinned requirements file, and a
typed, file-based hand-off to a standalone script run by that venv's Python.

A converter whose real requirements conflict with the main environment's pins (litert-torch wants an older
typing-extensions and pydantic than fastapi does) cannot be imported here; it runs in `.venv-<name>` instead,
as `<env>/bin/python <script> <request.json> <response.json>`. The script must not import crossdeploy: the
environment does not have it. Its failures raise `ExportError`, so the matrix reports them like any other."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

from pydantic import BaseModel, Field, ValidationError
from rich.console import Console

from crossdeploy.errors import CrossdeployError, ExportError

PROJECT_ROOT = Path(__file__).resolve().parents[1]
ENVIRONMENTS = PROJECT_ROOT / "environments"
TOOLS = Path(__file__).resolve().parent / "envtools"
STAMP = ".crossdeploy-stamp"
LOG = "build.log"
STDERR_TAIL = 6  # lines of a failing tool's stderr kept in its one-line error


class Environment(BaseModel):
    """A declared environment: `install_first` is installed exactly, before the requirements file (torch's
    local CPU wheel: any other spec lets pip pull the CUDA build)."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    requirements: Path
    install_first: list[str] = []

    def stamp(self) -> str:
        """What the built environment was built from: the requirements file's sha256 and the first list."""
        digest = hashlib.sha256(self.requirements.read_bytes())
        digest.update("\n".join(self.install_first).encode())
        return digest.hexdigest()


LITERT = Environment(name="litert", requirements=ENVIRONMENTS / "litert.txt", install_first=["torch==2.13.0"])
DECLARED = {env.name: env for env in (LITERT,)}


class ToolRequest(BaseModel):
    inputs: dict[str, str]  # role -> input artifact path
    output_dir: str
    options: dict[str, object] = {}


class ToolResponse(BaseModel):
    outputs: dict[str, str]  # role -> output artifact path
    versions: dict[str, str] = {}  # tool -> version, as installed in the environment
    notes: list[str] = []


def env_root() -> Path:
    """Where environments live: the project root, or $CROSSDEPLOY_ENV_ROOT (tests build into a tmp folder)."""
    return Path(os.environ.get("CROSSDEPLOY_ENV_ROOT") or PROJECT_ROOT)


def env_path(env: Environment, root: Path | None = None) -> Path:
    return (root or env_root()) / f".venv-{env.name}"


def is_current(env: Environment, root: Path | None = None) -> bool:
    stamp = env_path(env, root) / STAMP
    return stamp.is_file() and stamp.read_text().strip() == env.stamp()


def _steps(env: Environment, path: Path) -> list[tuple[str, list[str]]]:
    pip = [str(path / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check"]
    steps = [("creating the venv", [sys.executable, "-m", "venv", str(path)])]
    if env.install_first:
        steps.append((f"installing {' '.join(env.install_first)}", pip + env.install_first))
    if any(line.split("#")[0].strip() for line in env.requirements.read_text().splitlines()):
        steps.append((f"installing {env.requirements.name}", pip + ["-r", str(env.requirements)]))
    return steps


def ensure(env: Environment, root: Path | None = None, console: Console | None = None) -> Path:
    """The environment's folder, built first if it is missing or was built from other requirements."""
    path = env_path(env, root)
    if is_current(env, root):
        return path
    if not env.requirements.is_file():
        raise CrossdeployError(f"environment '{env.name}': no requirements file {env.requirements}")
    if path.exists():
        shutil.rmtree(path)  # stale: rebuilt from scratch, never upgraded in place
    console = console or Console(stderr=True)
    log_path = path.parent / f".venv-{env.name}.log"  # beside the env until the venv exists
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as log, console.status(f"building environment '{env.name}'") as status:
        for step, command in _steps(env, path):
            status.update(f"environment '{env.name}': {step} (log: {log_path})")
            log.write(f"$ {' '.join(command)}\n")
            log.flush()
            done = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            if done.returncode != 0:
                raise CrossdeployError(f"environment '{env.name}' failed to build while {step} "
                                       f"(exit {done.returncode}); see {log_path}")
            console.print(f"environment '{env.name}': {step} done")
    shutil.move(str(log_path), path / LOG)
    (path / STAMP).write_text(env.stamp() + "\n")
    return path


def _tail(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return " | ".join(lines[-STDERR_TAIL:]) or "no output on stderr"


def run_tool(env: Environment, script: Path, request: ToolRequest, variant: str, timeout: float = 600.0,
             root: Path | None = None) -> ToolResponse:
    """Run `script` in the (built) environment with `request`; its response, or an `ExportError` for
    `variant` carrying the tool's last stderr lines."""
    python = ensure(env, root) / "bin" / "python"
    work = Path(request.output_dir)
    work.mkdir(parents=True, exist_ok=True)
    request_file, response_file = work / "request.json", work / "response.json"
    request_file.write_text(request.model_dump_json(indent=1))
    response_file.unlink(missing_ok=True)
    command = [str(python), str(script), str(request_file), str(response_file)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        stderr = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else exc.stderr or ""
        raise ExportError(variant, f"{script.name} did not finish within {timeout:g} s: {_tail(stderr)}") from None
    if done.returncode != 0:
        raise ExportError(variant, f"{script.name} exited with {done.returncode}: {_tail(done.stderr)}")
    if not response_file.is_file():
        raise ExportError(variant, f"{script.name} wrote no response: {_tail(done.stderr)}")
    try:
        return ToolResponse.model_validate_json(response_file.read_text())
    except ValidationError as exc:
        reason = f"{exc.error_count()} error(s), first: {exc.errors()[0]['msg']}"
        raise ExportError(variant, f"{script.name} wrote an invalid response ({reason}): {_tail(done.stderr)}") from None


def main(argv: list[str] | None = None) -> int:
    """`python -m export.environments NAME...`: build the named environments (make env-<name>)."""
    names = (argv if argv is not None else sys.argv[1:]) or list(DECLARED)
    unknown = [n for n in names if n not in DECLARED]
    try:
        if unknown:
            raise CrossdeployError(f"unknown environment(s) {', '.join(unknown)}; known: {', '.join(DECLARED)}")
        for name in names:
            print(f"environment '{name}' is ready: {ensure(DECLARED[name])}")
    except CrossdeployError as exc:
        print(f"crossdeploy: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

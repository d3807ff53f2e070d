"""What every target shares: the repository read through `crossdeploy.repository`, the image and the user the
Dockerfile makes, the output folder, YAML out."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import yaml

from crossdeploy.errors import CrossdeployError, RepositoryError
from crossdeploy.repository import ModelRepository, VariantConfig

IMAGE = "crossdeploy-gateway:latest"  # what compose.yaml builds from docker/
UID = 10001  # the user docker/Dockerfile creates; the image runs as it
NAME = "crossdeploy-gateway"
PORT = 8000
APP_ROOT = "/app"  # the Dockerfile's layout: the repository is built into the image under it
# Folders the gateway writes at run time (the frameworks' caches, its logs and management token, temporary files):
# emptyDirs, so the rest of the root file system can be read-only.
WRITABLE = {"cache": f"{APP_ROOT}/.cache", "build": f"{APP_ROOT}/build", "tmp": "/tmp"}
LABELS = {"app.kubernetes.io/name": NAME, "app.kubernetes.io/part-of": "crossdeploy"}


class DeployError(CrossdeployError):
    """The manifests cannot be written (an output folder that cannot be created or written)."""


def variants(root: Path | str) -> list[VariantConfig]:
    """Every variant's config; a repository that is missing or holds no variant is an error, not empty output."""
    repository = ModelRepository(root)
    if not repository.exists() or not repository.names():
        raise RepositoryError(f"model repository {root} is missing or empty (run `crossdeploy pipeline` first)")
    return repository.list()


def folder(out: Path, *parts: str) -> Path:
    """`out`/parts, created; one line when it cannot be (a file in the way, no permission)."""
    path = Path(out, *parts)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".crossdeploy-write-check"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise DeployError(f"cannot write manifests to {path}: {exc.strerror or exc}") from exc
    return path


class _Plain(yaml.SafeDumper):
    """No anchors: a dict used twice (the labels) is written out twice, as a person would write it."""

    def ignore_aliases(self, data) -> bool:
        return True


def write_yaml(path: Path, documents: list[dict], header: str = "") -> Path:
    comment = "".join(f"# {line}\n" if line else "#\n" for line in header.splitlines())
    body = yaml.dump_all(documents, Dumper=_Plain, sort_keys=False, default_flow_style=False, width=120)
    path.write_text(comment + body)
    return path


def link_or_copy(source: Path, target: Path) -> Path:
    """A hard link where the file systems allow one (no second copy of the artifact), else a copy."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists() or target.is_symlink():
        target.unlink()
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)
    return target


def security_context() -> dict:
    return {"runAsNonRoot": True, "runAsUser": UID, "runAsGroup": UID, "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}}


def writable_volumes() -> tuple[list[dict], list[dict]]:
    """(volumes, volumeMounts) for the folders the gateway writes."""
    volumes = [{"name": name, "emptyDir": {}} for name in WRITABLE]
    mounts = [{"name": name, "mountPath": path} for name, path in WRITABLE.items()]
    return volumes, mounts

"""What hands the repository to Kubernetes, KServe or Triton, generated from the repository itself: `generate`
(the `crossdeploy deploy` command). Reads the repository through crossdeploy.repository only; imports no
framework, no runtime and nothing of serving or export."""

from __future__ import annotations

from pathlib import Path

from crossdeploy.errors import CrossdeployError
from crossdeploy.settings import Settings

from . import k8s, kserve, triton
from .common import IMAGE, DeployError, variants

TARGETS = ("k8s", "kserve", "triton")

__all__ = ["IMAGE", "TARGETS", "DeployError", "generate"]


def generate(target: str, repository: Path | str, out: Path | str, *, settings: Settings | None = None,
             image: str | None = None, storage_uri: str | None = None, per_variant: bool = False) -> list[Path]:
    """Write `target`'s files for `repository` under `out`/<target>/ and return them, in writing order."""
    if target not in TARGETS:
        raise CrossdeployError(f"unknown deploy target '{target}': use one of {', '.join(TARGETS)}")
    settings = settings or Settings()
    root, out = Path(repository), Path(out)
    configs = variants(root)
    if target == "k8s":
        return k8s.generate(configs, out, settings=settings, image=image or IMAGE)
    if target == "kserve":
        return kserve.generate(configs, root, out, settings=settings, image=image or IMAGE,
                               storage_uri=storage_uri, per_variant=per_variant)
    return triton.generate(configs, root, out, settings=settings)

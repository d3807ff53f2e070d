"""The Ray engine's application as a Serve config file, for operators who run `serve deploy` on a cluster of
their own (the form `serve build` writes: import path, args, every deployment's options)."""

from __future__ import annotations

from pathlib import Path

import yaml

from crossdeploy.errors import RepositoryError
from crossdeploy.repository import ModelRepository
from crossdeploy.settings import Settings

from .application import config_document

HEADER = """# Ray Serve config for the crossdeploy gateway, written by `crossdeploy deploy ray`.
# Deploy: ray start --head --disable-usage-stats --include-dashboard=false && serve deploy {name}
# `args` are the gateway's settings (the CROSSDEPLOY_* fields); the repository path must exist on every node.
# Each deployment's options may be edited here; `serve deploy` applies them over the application's defaults.
"""


def write_config(settings: Settings, out: Path) -> Path:
    repository = ModelRepository(settings.repository, settings.keep_versions)
    if not repository.exists() or not repository.names():
        raise RepositoryError(f"model repository {settings.repository} is missing or empty")
    settings = settings.model_copy(update=dict(repository=Path(settings.repository).resolve()))
    out = Path(out)
    try:
        (out / "ray").mkdir(parents=True, exist_ok=True)
        path = out / "ray" / "serve_config.yaml"
        path.write_text(HEADER.format(name=path.name) + yaml.safe_dump(config_document(settings), sort_keys=False))
    except OSError as exc:
        raise RepositoryError(f"cannot write the Serve config to {out}: {exc.strerror or exc}") from None
    return path

"""`crossdeploy deploy kserve`: the gateway as a custom KServe ServingRuntime speaking the V2 protocol, and an
InferenceService over the whole repository (or, with per_variant, one per variant).

KServe puts what `storageUri` names at /mnt/models. The gateway serves a repository (<root>/<variant>/...), so
a per-variant service needs a one-variant repository at its URI: those are written under
<out>/kserve/repositories/<variant>/<variant>/ (hard links) to be uploaded where the URI points.
"""

from __future__ import annotations

from pathlib import Path

from crossdeploy import __version__
from crossdeploy.repository import CONFIG, ModelRepository, VariantConfig
from crossdeploy.settings import Settings

from .common import LABELS, NAME, folder, link_or_copy, security_context, writable_volumes, write_yaml
from .k8s import settings_env

MODELS = "/mnt/models"  # where KServe's storage initializer puts what storageUri names
KSERVE_PORT = 8080  # the port KServe routes a custom runtime's traffic to
REPOSITORY_FORMAT = "crossdeploy-repository"  # the whole repository, every format in it, as one model
DEFAULT_STORAGE = {False: "pvc://crossdeploy-models/model_repository", True: "pvc://crossdeploy-models/repositories"}


def model_formats(configs: list[VariantConfig]) -> list[dict]:
    present = sorted({c.format for c in configs})
    return ([{"name": REPOSITORY_FORMAT, "version": __version__, "autoSelect": True}]
            + [{"name": name, "autoSelect": True} for name in present])


def runtime(configs: list[VariantConfig], image: str, settings: Settings) -> dict:
    volumes, mounts = writable_volumes()
    env = {**settings_env(settings), "CROSSDEPLOY_REPOSITORY": MODELS, "CROSSDEPLOY_PORT": str(KSERVE_PORT)}
    gateway = {"name": "kserve-container", "image": image,
               "command": ["crossdeploy", "serve"],
               "args": ["--host", "0.0.0.0", "--port", str(KSERVE_PORT), "--repository", MODELS],
               "env": [{"name": key, "value": value} for key, value in env.items()],
               "ports": [{"containerPort": KSERVE_PORT, "protocol": "TCP"}],
               "readinessProbe": {"httpGet": {"path": "/v2/health/ready", "port": KSERVE_PORT},
                                  "periodSeconds": 10, "failureThreshold": 3},
               "securityContext": security_context(), "volumeMounts": mounts}
    return {"apiVersion": "serving.kserve.io/v1alpha1", "kind": "ServingRuntime",
            "metadata": {"name": NAME, "labels": LABELS},
            "spec": {"supportedModelFormats": model_formats(configs), "protocolVersions": ["v2"],
                     "multiModel": False, "containers": [gateway], "volumes": volumes}}


def inference_service(name: str, model_format: str, storage_uri: str) -> dict:
    return {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
            "metadata": {"name": name, "labels": LABELS},
            "spec": {"predictor": {"model": {"modelFormat": {"name": model_format}, "runtime": NAME,
                                             "protocolVersion": "v2", "storageUri": storage_uri}}}}


def one_variant_repository(repository: ModelRepository, config: VariantConfig, out: Path) -> list[Path]:
    """<out>/<variant>/<variant>/: the variant's config and every version it lists, hard-linked."""
    root = out / config.name / config.name
    written = [link_or_copy(repository.root / config.name / CONFIG, root / CONFIG)]
    for record in config.versions:
        version = repository.version_dir(config.name, record.version)
        for file in record.files:
            written.append(link_or_copy(version / file.path, root / str(record.version) / file.path))
    return written


def generate(configs: list[VariantConfig], root: Path, out: Path, *, settings: Settings, image: str,
             storage_uri: str | None, per_variant: bool) -> list[Path]:
    target = folder(out, "kserve")
    base = (storage_uri or DEFAULT_STORAGE[per_variant]).rstrip("/")
    written = [write_yaml(target / "servingruntime.yaml", [runtime(configs, image, settings)],
                          "The crossdeploy gateway as a KServe custom runtime (V2 protocol).")]
    if not per_variant:
        written.append(write_yaml(target / "inferenceservice.yaml",
                                  [inference_service(NAME, REPOSITORY_FORMAT, base)],
                                  f"storageUri: where the cluster finds the model repository ({root.resolve()})."))
        return written
    repository = ModelRepository(root)
    for config in configs:
        written.append(write_yaml(target / f"inferenceservice-{config.name}.yaml",
                                  [inference_service(config.name, config.format, f"{base}/{config.name}")],
                                  f"storageUri: {target / 'repositories' / config.name} uploaded."))
        written += one_variant_repository(repository, config, target / "repositories")
    return written

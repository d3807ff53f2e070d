"""`crossdeploy deploy k8s`: Deployment, Service, HorizontalPodAutoscaler (autoscaling/v2) and the ConfigMap of
the gateway's settings, for the image docker/ builds (the repository is built into it)."""

from __future__ import annotations

import json
from pathlib import Path

from crossdeploy.repository import VariantConfig
from crossdeploy.settings import Settings

from .common import APP_ROOT, LABELS, NAME, PORT, UID, folder, security_context, writable_volumes, write_yaml
from .footprint import Footprint, footprint

# Where the settings point inside the container (the Dockerfile's own values), whatever they are on this machine.
CONTAINER = {"repository": f"{APP_ROOT}/model_repository", "workdir": f"{APP_ROOT}/build", "host": "0.0.0.0",
             "port": PORT}
# Secrets belong in a Secret, never in a ConfigMap: the management token is left out (docs/manifests.md).
SECRET = {"management_token"}
ANNOTATION = "crossdeploy.dev/memory-request-source"


def env_value(value) -> str:
    """As pydantic-settings reads it back: booleans in lower case, a nested section (a model, a list) as JSON."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def settings_env(settings: Settings) -> dict[str, str]:
    """Every setting as the CROSSDEPLOY_* variable the gateway reads, with the container's paths and address;
    unset ones are left to the gateway's default."""
    values = {**settings.model_dump(mode="json"), **CONTAINER}
    prefix = Settings.model_config["env_prefix"]
    return {f"{prefix}{name.upper()}": env_value(value) for name, value in values.items()
            if value is not None and name not in SECRET}


def config_map(settings: Settings) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"{NAME}-settings", "labels": LABELS},
            "data": settings_env(settings)}


def probe(path: str, period: int, failures: int) -> dict:
    return {"httpGet": {"path": path, "port": "http"}, "periodSeconds": period, "timeoutSeconds": 5,
            "failureThreshold": failures}


def container(image: str, settings: Settings, memory: Footprint) -> dict:
    _, mounts = writable_volumes()
    limit = memory.limit_mi(settings.max_in_flight, settings.max_body_bytes)
    return {
        "name": "gateway", "image": image, "imagePullPolicy": "IfNotPresent",
        "ports": [{"name": "http", "containerPort": PORT, "protocol": "TCP"}],
        "envFrom": [{"configMapRef": {"name": f"{NAME}-settings"}}],
        # Loading every variant takes up to two minutes (compose.yaml's start period): liveness waits for it.
        "startupProbe": probe("/v2/health/live", 5, 36),
        "livenessProbe": probe("/v2/health/live", 10, 3),
        # Ready runs a real batch-1 inference per variant (reused for probe_interval_s).
        "readinessProbe": probe("/v2/health/ready", 10, 3),
        "resources": {"requests": {"cpu": "1", "memory": f"{memory.request_mi()}Mi"},
                      "limits": {"cpu": "2", "memory": f"{limit}Mi"}},
        "securityContext": security_context(),
        "volumeMounts": mounts,
    }


def deployment(image: str, settings: Settings, memory: Footprint) -> dict:
    volumes, _ = writable_volumes()
    pod = {"securityContext": {"runAsNonRoot": True, "runAsUser": UID, "fsGroup": UID,
                               "seccompProfile": {"type": "RuntimeDefault"}},
           "automountServiceAccountToken": False,
           "containers": [container(image, settings, memory)], "volumes": volumes}
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": NAME, "labels": LABELS, "annotations": {ANNOTATION: memory.source}},
            "spec": {"replicas": 1, "selector": {"matchLabels": LABELS},
                     "template": {"metadata": {"labels": LABELS}, "spec": pod}}}


def service() -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": NAME, "labels": LABELS},
            "spec": {"type": "ClusterIP", "selector": LABELS,
                     "ports": [{"name": "http", "port": PORT, "targetPort": "http", "protocol": "TCP"}]}}


def autoscaler() -> dict:
    return {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": NAME, "labels": LABELS},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": NAME},
                     "minReplicas": 1, "maxReplicas": 4,
                     "metrics": [{"type": "Resource", "resource": {
                         "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}}]}}


def generate(configs: list[VariantConfig], out: Path, *, settings: Settings, image: str) -> list[Path]:
    target = folder(out, "k8s")
    memory = footprint(Path(settings.workdir) / "reports", configs)
    header = f"memory request {memory.request_mi()}Mi from {memory.source}"
    return [write_yaml(target / "configmap.yaml", [config_map(settings)],
                       "The gateway's settings as CROSSDEPLOY_* variables (the management token is not here: "
                       "put it in a Secret)."),
            write_yaml(target / "deployment.yaml", [deployment(image, settings, memory)], header),
            write_yaml(target / "service.yaml", [service()]),
            write_yaml(target / "hpa.yaml", [autoscaler()])]

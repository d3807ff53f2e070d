"""The gateway as a Ray Serve application: the FastAPI app as the ingress deployment, and one model deployment
per runtime family, each with its replicas or autoscaling, its CPUs, its queue bounds and a health check that
runs the models. Built from the same Settings as the in-process gateway (`settings.ray`, docs/scaling.md).

`build(settings)` gives the application for `serve.run`; `app_builder(args)` is the same for operators who run
`serve deploy` with the YAML `config_document` writes (the form `serve build` writes)."""

from __future__ import annotations

from ray import serve
from ray.serve.config import AutoscalingConfig

from crossdeploy.settings import FAMILIES, FamilyScale, Settings

from .families import deployment_name
from .replica import ModelFamily

APP_NAME = "crossdeploy"
INGRESS = "gateway"
IMPORT_PATH = "crossdeploy.serving.ray_engine.application:app_builder"


class Ingress:
    """The ingress deployment: the in-process gateway's FastAPI app, built in the replica, whose registry's
    entries run on the family deployments (remote.py)."""

    def __init__(self, settings: Settings, *families):
        self.settings = settings
        self.handles = dict(zip(FAMILIES, families))

    def __serve_build_asgi_app__(self):
        from ..app import create_app
        from .remote import RemoteRegistry

        settings = self.settings
        return create_app(settings, registry=lambda repository: RemoteRegistry(repository, self.handles, settings.retry_after_s))


def family_options(scale: FamilyScale, settings: Settings) -> dict:
    """Ray Serve deployment options of one family, from its section of the settings."""
    options = dict(max_ongoing_requests=scale.max_ongoing_requests, max_queued_requests=scale.max_queued_requests,
                   ray_actor_options={"num_cpus": scale.num_cpus},
                   health_check_period_s=settings.ray.health_check_period_s,
                   health_check_timeout_s=max(30.0, 3 * settings.inference_timeout_s),
                   graceful_shutdown_timeout_s=settings.inference_timeout_s)
    if scale.max_replicas is not None and scale.max_replicas > scale.replicas:
        options["autoscaling_config"] = AutoscalingConfig(
            min_replicas=scale.replicas, initial_replicas=scale.replicas, max_replicas=scale.max_replicas,
            target_ongoing_requests=scale.target_ongoing_requests, upscale_delay_s=2.0, downscale_delay_s=60.0)
    else:
        options["num_replicas"] = scale.replicas
    return options


def ingress_options(settings: Settings) -> dict:
    # The in-flight bound of the in-process gateway, here as Ray's: beyond it and its queue, Ray's proxy answers 503.
    return dict(num_replicas=settings.ray.ingress_replicas, ray_actor_options={"num_cpus": settings.ray.ingress_cpus},
                max_ongoing_requests=settings.max_in_flight, max_queued_requests=settings.max_waiting)


def build(settings: Settings):
    """The bound application: the ingress over one model deployment per family."""
    families = []
    for family in FAMILIES:
        deployment = serve.deployment(ModelFamily, name=deployment_name(family))
        families.append(deployment.options(**family_options(settings.ray.families[family], settings)).bind(family, settings))
    ingress = serve.deployment(serve.ingress()(Ingress), name=INGRESS).options(**ingress_options(settings))
    return ingress.bind(settings, *families)


def app_builder(args: dict):
    """`serve deploy`'s entry: the YAML's `args` are the settings (the same fields as CROSSDEPLOY_*)."""
    return build(Settings(**args))


def config_document(settings: Settings) -> dict:
    """The application as `serve build` writes it, for `serve deploy`: import path, the settings as args, and
    every deployment's options spelled out so an operator can edit them in place."""
    args = settings.model_dump(mode="json", exclude={"management_token"}, exclude_none=True) | {"engine": "ray"}
    deployments = [{"name": INGRESS, **_plain(ingress_options(settings))}]
    for family in FAMILIES:
        deployments.append({"name": deployment_name(family), **_plain(family_options(settings.ray.families[family], settings))})
    return {
        "proxy_location": "EveryNode",
        "http_options": {"host": settings.host, "port": settings.port},
        "applications": [{"name": APP_NAME, "route_prefix": "/", "import_path": IMPORT_PATH, "args": args,
                          "runtime_env": {"env_vars": {"RAY_USAGE_STATS_ENABLED": "0"}},
                          "deployments": deployments}],
    }


def _plain(options: dict) -> dict:
    found = dict(options)
    if isinstance(found.get("autoscaling_config"), AutoscalingConfig):
        config = found["autoscaling_config"]
        found["autoscaling_config"] = {k: getattr(config, k) for k in (
            "min_replicas", "initial_replicas", "max_replicas", "target_ongoing_requests", "upscale_delay_s", "downscale_delay_s")}
    return found

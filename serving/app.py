"""The gateway: `create_app(settings, repository)` builds one FastAPI app serving every variant of the model
repository in four protocols (KServe V2, TF Serving REST, TorchServe, compare) plus /metrics, one router per
protocol. `serve(settings)` runs it under uvicorn."""

from __future__ import annotations

import gc
import logging
from contextlib import asynccontextmanager
from typing import Callable

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from rich.console import Console
from rich.table import Table

from crossdeploy import __version__
from crossdeploy.repository import ModelRepository
from crossdeploy.settings import Settings

from . import compare, kserve_v2, openapi, repository_api, tfserving, torchserve, web, where
from .core import Gateway
from .management import describe, management_for, pinned_repository
from .error_responses import HANDLERS
from .admission import Admission
from .metrics import Metrics
from .registry import ModelRegistry
from .routing import protocol_router, share_allowed_methods
from .served_schemas import served_schemas
from .server_options import uvicorn_options

log = logging.getLogger("crossdeploy.gateway")
# FastAPI's native OpenTelemetry asks the global providers on every request whether it is configured: the
# gateway reports through /metrics and its statistics instead.
TELEMETRY_OFF = {"tracing": False, "metrics": False, "logs": False, "operation_spans": False}
DESCRIPTION = ("Every PyTorch and TensorFlow deployment pathway behind one gateway: KServe V2 (Triton's clients), "
               "TF Serving REST, TorchServe, and /v1/compare across all of them.")


def summary_table(gateway: Gateway, url: str | None = None) -> Table:
    table = Table(title=f"crossdeploy gateway{f' on {url}' if url else ''}", title_justify="left")
    for column in ("variant", "version", "state", "format", "load s", "note"):
        table.add_column(column, justify="right" if column == "load s" else "left")
    for entry in gateway.registry.all():
        style = "green" if entry.ready else "red"
        table.add_row(entry.name, str(entry.version), f"[{style}]{entry.state}[/]", entry.config.format if entry.config else "",
                      f"{entry.load_seconds:.2f}", entry.reason[:80])
    return table


def metrics_router(metrics: Metrics):
    router = protocol_router("Metrics")

    @router.get("/metrics", response_class=PlainTextResponse, **openapi.operation(
        "metrics", "Prometheus metrics", ok={CONTENT_TYPE_LATEST.split(";")[0]: {"schema": {"type": "string"}}}))
    async def prometheus(request: Request) -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return router


def served_facts(app: FastAPI) -> dict[str, dict]:
    """Component schemas only the running gateway knows (see served_schemas.py)."""
    gateway: Gateway | None = getattr(app.state, "gateway", None)
    configs = [e.config for e in gateway.registry.all() if e.config] if gateway else []
    return served_schemas(configs, gateway.max_batch if gateway else 1)


def create_app(settings: Settings | None = None, repository: ModelRepository | None = None,
               console: Console | None = None,
               registry: Callable[[ModelRepository], ModelRegistry] | None = None) -> FastAPI:
    """`registry` builds what serves the variants; by default a ModelRegistry that loads each into this process
    (the Ray engine passes one whose entries run on its model deployments)."""
    settings = settings or Settings()
    # Sealed, and pinned under --expect-digest (a repository with another digest is refused here, before serving).
    repository = pinned_repository(settings, repository or ModelRepository(settings.repository, settings.keep_versions))
    metrics = Metrics()
    management = management_for(settings, metrics.registry)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        served = registry(repository) if registry else ModelRegistry(repository, settings.serve_threads)
        await run_in_threadpool(served.load_all)
        gateway = Gateway(served, metrics, settings.max_batch, settings.inline_ms, settings.max_body_bytes,
                          settings.inference_timeout_s, settings.probe_interval_s, settings.max_queue_ms,
                          settings.retry_after_s, settings.executor_slots)
        gateway.count_models()
        # TensorFlow, Keras and torch leave millions of long-lived objects behind; a full collection that walks
        # them all stalls the event loop for tens of ms. Frozen, they are never scanned again (gc.freeze).
        gc.collect()
        gc.freeze()
        app.state.gateway = gateway
        app.openapi_schema = None  # rebuilt with the served signatures
        if console is not None:
            console.print(summary_table(gateway, f"http://{settings.host}:{settings.port}"))
            console.print(f"serving on [bold]http://{settings.host}:{settings.port}[/] — docs at /docs, metrics at /metrics")
            console.print(describe(management, repository.pinned is not None), markup=False, highlight=False, soft_wrap=True)
        for entry in (e for e in served.all() if not e.ready):
            log.error("%s v%s is UNAVAILABLE: %s", entry.name, entry.version, entry.reason)
        yield
        await run_in_threadpool(served.close)

    app = FastAPI(title="crossdeploy gateway", version=__version__, lifespan=lifespan, exception_handlers=HANDLERS,
                  description=DESCRIPTION, telemetry=TELEMETRY_OFF)
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.management = management
    # Routes are tried in order: the protocols with the routes called thousands of times come first, and each
    # declares its inference route first. They join the app's own route list: FastAPI's include_router puts
    # every included router behind a matching layer of its own, a second walk over the routes per request.
    routers = (kserve_v2.router, repository_api.router, tfserving.router, torchserve.router, compare.router, web.router, where.router, metrics_router(metrics))
    app.router.routes[:0] = [route for router in routers for route in router.routes]  # before /docs and /openapi.json
    app.mount("/static", web.static_files(), name="static")
    share_allowed_methods(app.routes)

    def document() -> dict:
        if app.openapi_schema is None:
            app.openapi_schema = openapi.document(app, served_facts(app))
        return app.openapi_schema

    app.openapi = document
    # Admission is decided in the HTTP protocol, before a request costs a task (admission.py, server_options.py).
    app.state.admission = Admission(settings.max_in_flight, metrics, settings.retry_after_s,
                                    settings.admission_wait_ms / 1e3, settings.max_waiting)
    return app


def serve(settings: Settings) -> None:
    import uvicorn

    from crossdeploy.errors import RepositoryError

    repository = ModelRepository(settings.repository, settings.keep_versions)
    if not repository.exists() or not repository.names():
        raise RepositoryError(f"model repository {settings.repository} is missing or empty (run `crossdeploy pipeline` first)")
    if settings.engine == "ray":
        from .ray_engine.launch import serve_on_ray

        return serve_on_ray(settings)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    app = create_app(settings, repository, console=Console())
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="info", access_log=settings.access_log,
                **uvicorn_options(settings, app))

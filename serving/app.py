"""The gateway: `create_app(settings, repository)` builds one FastAPI app serving every variant of the model
repository in four protocols (KServe V2, TF Serving REST, TorchServe, compare) plus /metrics.
`serve(settings)` runs it under uvicorn."""

from __future__ import annotations

import gc
import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.openapi.utils import get_openapi
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.routing import compile_path
from rich.console import Console
from rich.table import Table

from crossdeploy import __version__
from crossdeploy.repository import ModelRepository
from crossdeploy.settings import Settings

from . import compare, kserve_v2, tfserving, torchserve, web
from .core import Gateway
from .http import DOCUMENTED, HANDLERS, InFlightLimit
from .metrics import Metrics
from .registry import ModelRegistry

log = logging.getLogger("crossdeploy.gateway")


def summary_table(gateway: Gateway, url: str | None = None) -> Table:
    table = Table(title=f"crossdeploy gateway{f' on {url}' if url else ''}", title_justify="left")
    for column in ("variant", "version", "state", "format", "load s", "note"):
        table.add_column(column, justify="right" if column == "load s" else "left")
    for entry in gateway.registry.all():
        style = "green" if entry.ready else "red"
        table.add_row(entry.name, str(entry.version), f"[{style}]{entry.state}[/]", entry.config.format if entry.config else "",
                      f"{entry.load_seconds:.2f}", entry.reason[:80])
    return table


class FastPath:
    """Pure ASGI: the inference routes dispatched straight to their endpoint functions, without FastAPI's routing
    and dependency machinery, which cost over a third of a small request's event-loop time. The same functions
    serve; FastAPI still holds the routes, for /docs and for every other path."""

    def __init__(self, app, routes):
        self.app = app
        self.routes = [(compile_path(r.path)[0], r.methods, r.endpoint) for r in routes]

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["method"] in ("POST", "PUT"):
            for regex, methods, endpoint in self.routes:
                match = regex.match(scope["path"]) if scope["method"] in methods else None
                if match:
                    scope["path_params"] = match.groupdict()
                    request = Request(scope, receive)
                    try:
                        response = await endpoint(request)
                    except Exception as exc:  # the app's own handler table shapes every error
                        handler = next(HANDLERS[c] for c in type(exc).__mro__ if c in HANDLERS)
                        response = await handler(request, exc)
                    return await response(scope, receive, send)
        return await self.app(scope, receive, send)


def create_app(settings: Settings | None = None, repository: ModelRepository | None = None,
               console: Console | None = None) -> FastAPI:
    settings = settings or Settings()
    repository = repository or ModelRepository(settings.repository, settings.keep_versions)
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        registry = ModelRegistry(repository, settings.serve_threads)
        await run_in_threadpool(registry.load_all)
        gateway = Gateway(registry, metrics, settings.max_batch, settings.inline_ms)
        gateway.count_models()
        # TensorFlow, Keras and torch leave millions of long-lived objects behind; a full collection that walks
        # them all stalls the event loop for tens of ms. Frozen, they are never scanned again (gc.freeze).
        gc.collect()
        gc.freeze()
        app.state.gateway = gateway
        if console is not None:
            console.print(summary_table(gateway, f"http://{settings.host}:{settings.port}"))
            console.print(f"serving on [bold]http://{settings.host}:{settings.port}[/] — docs at /docs, metrics at /metrics")
        failed = [e for e in registry.all() if not e.ready]
        for entry in failed:
            log.error("%s v%s is UNAVAILABLE: %s", entry.name, entry.version, entry.reason)
        yield
        await run_in_threadpool(registry.close)

    app = FastAPI(title="crossdeploy gateway", version=__version__, lifespan=lifespan, exception_handlers=HANDLERS,
                  description="Every PyTorch and TensorFlow deployment pathway behind one gateway: KServe V2 "
                              "(Triton's clients), TF Serving REST, TorchServe, and /v1/compare across all of them.")
    app.state.settings = settings
    app.state.metrics = metrics
    # Inference routes first: routes are tried in order and these are the ones called thousands of times.
    for module in (kserve_v2, tfserving, torchserve, compare):
        app.include_router(module.inference)
    for module in (kserve_v2, tfserving, torchserve, web):
        app.include_router(module.router)
    app.mount("/static", web.static_files(), name="static")

    @app.get("/metrics", tags=["Metrics"], summary="Prometheus metrics")
    async def prometheus():
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    def openapi() -> dict:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            schema.setdefault("components", {}).setdefault("schemas", {}).update(DOCUMENTED)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi
    app.add_middleware(FastPath, routes=[r for m in (kserve_v2, tfserving, torchserve, compare) for r in m.inference.routes])
    app.add_middleware(InFlightLimit, limit=settings.max_in_flight, metrics=metrics)  # outermost: counts everything
    return app


def serve(settings: Settings) -> None:
    import uvicorn

    from crossdeploy.errors import RepositoryError

    repository = ModelRepository(settings.repository, settings.keep_versions)
    if not repository.exists() or not repository.names():
        raise RepositoryError(f"model repository {settings.repository} is missing or empty (run `crossdeploy pipeline` first)")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    app = create_app(settings, repository, console=Console())
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="info", access_log=settings.access_log,
                timeout_graceful_shutdown=5, loop="uvloop", http="httptools")

"""`crossdeploy serve --engine ray`: joins the Ray cluster named by `--address` (or RAY_ADDRESS), else starts a
local one for this process (no dashboard, usage stats off), runs the application on Ray's HTTP proxy at
`--host`/`--port`, and tears it down on Ctrl-C."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time

from rich.console import Console
from rich.table import Table

from crossdeploy.errors import CrossdeployError
from crossdeploy.repository import ModelRepository

from crossdeploy.settings import Settings

log = logging.getLogger("crossdeploy.gateway")


def start_cluster(settings: Settings) -> None:
    """Joins or starts the cluster (idempotent: a process already connected stays connected)."""
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    import ray

    if ray.is_initialized():
        return
    address = settings.ray.address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, logging_level=logging.WARNING)
    else:
        ray.init(num_cpus=settings.ray.num_cpus or os.cpu_count(), include_dashboard=False,
                 logging_level=logging.WARNING, runtime_env={"env_vars": {"RAY_USAGE_STATS_ENABLED": "0"}})


def deploy(settings: Settings) -> float:
    """Runs the application on the cluster and waits until it serves; returns the seconds that took."""
    from ray import serve

    from .application import APP_NAME, build

    started = time.perf_counter()
    start_cluster(settings)
    serve.start(http_options={"host": settings.host, "port": settings.port}, logging_config={"log_level": "WARNING"})
    # Ray logs every call a replica takes at INFO; the gateway's own access log is a setting, off by default.
    serve.run(build(settings), name=APP_NAME, route_prefix="/", blocking=False,
              logging_config={"log_level": "WARNING", "enable_access_log": settings.access_log})
    return time.perf_counter() - started


def stop(settings: Settings | None = None) -> None:
    """Removes the application. On a cluster this process started, Serve and the cluster go with it; on a
    joined one (`--address`, RAY_ADDRESS), only the application does, and the process disconnects."""
    import ray
    from ray import serve

    from .application import APP_NAME

    if not ray.is_initialized():
        return
    joined = settings is not None and bool(settings.ray.address or os.environ.get("RAY_ADDRESS"))
    try:
        if joined:
            serve.delete(APP_NAME)
        else:
            serve.shutdown()
    finally:
        ray.shutdown()


def served_table(settings: Settings) -> Table:
    """What the application serves, as its own repository index says (asked over HTTP, like any client)."""
    import httpx

    from .families import family_of

    table = Table(title="crossdeploy gateway on Ray Serve", title_justify="left")
    for column in ("variant", "version", "state", "deployment", "note"):
        table.add_column(column)
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host
    index = httpx.post(f"http://{host}:{settings.port}/v2/repository/index", timeout=60).json()
    repository = ModelRepository(settings.repository, settings.keep_versions)
    for entry in index:
        try:
            family = family_of(repository.config(entry["name"]).format) or ""
        except CrossdeployError:
            family = ""
        style = "green" if entry["state"] == "READY" else "red"
        table.add_row(entry["name"], entry["version"], f"[{style}]{entry['state']}[/]", f"models-{family}" if family else "",
                      entry.get("reason", "")[:80])
    return table


def serve_on_ray(settings: Settings) -> None:
    """Serves until Ctrl-C or SIGTERM (the repository was checked by serving.app.serve)."""
    console = Console()
    with console.status("starting the Ray engine: a cluster, then one replica per runtime family, each loading its variants"):
        seconds = deploy(settings)
    console.print(served_table(settings))
    console.print(f"serving on [bold]http://{settings.host}:{settings.port}[/] through Ray Serve (ready in {seconds:.1f} s) "
                  "— docs at /docs, metrics at /metrics; Ctrl-C removes the application (and the cluster, if this process started it)")
    done = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: done.set())
    try:
        done.wait()
    finally:
        with console.status("stopping the Ray engine"):
            stop(settings)

"""A real gateway on a free loopback port, in a thread of the test process (uvicorn, not a test client)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
import time

import uvicorn

from crossdeploy.bench.gateway_floor import free_port
from crossdeploy.repository import ModelRepository
from crossdeploy.serving.app import create_app
from crossdeploy.serving.server_options import uvicorn_options
from crossdeploy.settings import Settings




ENGINES = ("inprocess", "ray")  # what runs the gateway: one process, or a Ray Serve application


class LiveGateway:
    def __init__(self, repository: ModelRepository, **settings):
        self.port = free_port()
        self.settings = Settings(repository=repository.root, host="127.0.0.1", port=self.port, **settings)
        self.app = create_app(self.settings, repository)
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on",
                                **uvicorn_options(self.settings, self.app))
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def address(self) -> str:  # what tritonclient wants
        return f"127.0.0.1:{self.port}"

    def __enter__(self) -> "LiveGateway":
        self.thread.start()
        deadline = time.monotonic() + 600
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the gateway did not start")
            time.sleep(0.1)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=60)


class RayGateway:
    """The same gateway as a Ray Serve application on the test session's local cluster (`ray_cluster` in
    conftest.py), reached through Ray's HTTP proxy; the same interface as LiveGateway."""

    def __init__(self, repository: ModelRepository, port: int, **settings):
        self.port = port
        self.settings = Settings(repository=repository.root, host="127.0.0.1", port=port, engine="ray", **settings)

    url = LiveGateway.url
    address = LiveGateway.address

    # Serve's client runs an event loop of its own; a test thread may already run one (Playwright's sync API
    # does), so deploying and deleting happen on a thread of their own.
    def __enter__(self) -> "RayGateway":
        from crossdeploy.serving.ray_engine.launch import deploy

        with ThreadPoolExecutor(1) as thread:
            self.start_seconds = thread.submit(deploy, self.settings).result()
        return self

    def __exit__(self, *exc) -> None:
        from ray import serve

        from crossdeploy.serving.ray_engine.application import APP_NAME

        with ThreadPoolExecutor(1) as thread:
            thread.submit(serve.delete, APP_NAME).result()


def gateway_on(engine: str, repository: ModelRepository, request, **settings):
    """A LiveGateway or a RayGateway (on the session's cluster) with these settings."""
    if engine == "ray":
        return RayGateway(repository, request.getfixturevalue("ray_cluster"), **settings)
    return LiveGateway(repository, **settings)

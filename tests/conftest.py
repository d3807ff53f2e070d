"""Session fixtures: the real pipeline (train both models, export all 15 pathways) into a temporary
repository. Nothing is mocked and no binary is committed; everything below runs on these artifacts."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

import crossdeploy  # noqa: F401  (environment first)
from crossdeploy.repository import ModelRepository

# Hypothesis: the suite's bounded profile by default; `make fuzz` runs the same properties under "fuzz"
# (HYPOTHESIS_PROFILE=fuzz, CROSSDEPLOY_FUZZ_HYPOTHESIS_EXAMPLES examples per property).
settings.register_profile("crossdeploy", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("fuzz", parent=settings.get_profile("crossdeploy"), print_blob=True,
                          max_examples=int(os.environ.get("CROSSDEPLOY_FUZZ_HYPOTHESIS_EXAMPLES", "2000")))
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "crossdeploy"))

EPOCHS = 30  # the pipeline's default: the accuracy bar (>= 0.95) is asserted on what users get


@pytest.fixture(scope="session")
def workdir(tmp_path_factory) -> Path:
    from crossdeploy.pipeline import train

    path = tmp_path_factory.mktemp("work")
    train(workdir=path, epochs=EPOCHS, seed=0)
    return path


@pytest.fixture(scope="session")
def repository(request, tmp_path_factory) -> ModelRepository:
    from crossdeploy.pipeline import export_in_fresh_process

    root = tmp_path_factory.mktemp("repo") / "model_repository"
    prebuilt = os.environ.get("CROSSDEPLOY_TEST_REPOSITORY")
    if prebuilt:  # a developer's shortcut: a copy of a repository `crossdeploy pipeline` built (CI never sets it)
        shutil.copytree(prebuilt, root, ignore=shutil.ignore_patterns(".staging"))
        return ModelRepository(root)
    workdir = request.getfixturevalue("workdir")
    export_in_fresh_process(repository=root, workdir=workdir)  # as `crossdeploy pipeline` does
    return ModelRepository(root)


@pytest.fixture
def scratch_repository(repository, tmp_path) -> ModelRepository:
    """A private copy to damage (corrupt, perturb) without touching the shared one."""
    root = tmp_path / "model_repository"
    shutil.copytree(repository.root, root, ignore=shutil.ignore_patterns(".staging"))
    return ModelRepository(root)


@pytest.fixture(scope="session")
def ray_cluster() -> int:
    """A local Ray cluster for the session, as CI would start one (2 CPUs, no dashboard, usage stats off), with
    Serve's HTTP proxy on a free loopback port (returned). Stopped at the end of the session."""
    from ray import serve

    from crossdeploy.bench.gateway_floor import free_port
    from crossdeploy.serving.ray_engine.launch import start_cluster, stop
    from crossdeploy.settings import Settings

    port = free_port()
    start_cluster(Settings(ray={"num_cpus": 2}))
    serve.start(http_options={"host": "127.0.0.1", "port": port}, logging_config={"log_level": "WARNING"})
    yield port
    stop()

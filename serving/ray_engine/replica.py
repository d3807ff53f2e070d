"""A model replica of the Ray engine: one process holding every variant of one runtime family, loaded and run by
the same registry and execution code as the in-process gateway (each version on its own one-thread executor,
under the inference deadline). It sees arrays only: decoding and encoding stay in the ingress.

Reloads reach every replica, not only the one a handle call lands on: the ingress stamps each call with the
variant's generation, and a replica that holds an older one reloads it before running the call.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys

import numpy as np

from crossdeploy.errors import CrossdeployError, ModelNotFound
from crossdeploy.repository import ModelRepository
from crossdeploy.settings import Settings

from ..execution import on_executor
from ..management import pinned_repository
from ..registry import ModelRegistry, probe_inputs
from .families import family_of

log = logging.getLogger("crossdeploy.gateway")


def pin_threads(threads: int) -> None:
    """Ray sets OMP_NUM_THREADS from the replica's CPUs (1 when fractional); the runtimes get `threads`
    explicitly instead, and the libraries that read the environment at import see the same figure."""
    for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "TF_NUM_INTRAOP_THREADS"):
        os.environ[variable] = str(threads)
    os.environ["TF_NUM_INTEROP_THREADS"] = "1"


class ModelFamily:
    """The model deployment of one family (a Ray Serve deployment class; see application.py)."""

    def __init__(self, family: str, settings: Settings):
        scale = settings.ray.families[family]
        pin_threads(scale.threads)
        self.family = family
        self.repository = pinned_repository(settings, ModelRepository(settings.repository, settings.keep_versions))
        self.registry = ModelRegistry(self.repository, scale.threads)
        self.registry.limits.deadline_s = settings.inference_timeout_s
        self.generations: dict[str, int] = {}
        for name in self.names():
            self.registry.load(name)

    def names(self) -> list[str]:
        found = []
        for name in self.repository.names():
            try:
                config = self.repository.config(name)
            except CrossdeployError:
                continue  # the ingress reports an unreadable config itself
            if family_of(config.format) == self.family:
                found.append(name)
        return found

    def states(self) -> dict[str, dict[int, tuple[str, str, float]]]:
        """{variant: {version: (load state, reason, load seconds)}} as this replica loaded them."""
        return {name: {e.version: (e.load_state, e.load_reason, e.load_seconds) for e in self.registry.versions(name)}
                for name in self.registry.names()}

    def threads(self) -> dict[str, int | str]:
        """The thread counts in force in this replica: the environment Ray set, and each framework it imported."""
        found: dict[str, int | str] = {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "")}
        if "torch" in sys.modules:
            found["torch"] = sys.modules["torch"].get_num_threads()
        if "tensorflow" in sys.modules:
            found["tensorflow"] = sys.modules["tensorflow"].config.threading.get_intra_op_parallelism_threads()
        return found

    async def reload(self, name: str, generation: int) -> dict[int, tuple[str, str, float]]:
        await self._catch_up(name, generation)
        return self.states().get(name, {})

    async def infer(self, name: str, version: int, generation: int, inputs: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], int]:
        await self._catch_up(name, generation)
        served = self.registry.get(name, version)
        # Arrays from Ray's object store are read-only views; torch warns on them and an adapter may write.
        inputs = {k: v if v.flags.writeable else v.copy() for k, v in inputs.items()}
        outputs, began, finished, _ = await on_executor(served, inputs)
        return outputs, finished - began  # the compute; the ingress counts the rest of the round trip as queue

    async def check_health(self) -> None:
        """Ray's health check: every loaded version answers a batch-1 inference, else the replica is replaced."""
        entries = [e for e in self.registry.all() if e.loaded]
        results = await asyncio.gather(*(on_executor(e, probe_inputs(e.config)) for e in entries), return_exceptions=True)
        failed = [f"{e.name} v{e.version}: {r}" for e, r in zip(entries, results) if isinstance(r, BaseException)]
        if failed:
            raise RuntimeError(f"{self.family} replica unhealthy: " + "; ".join(failed))

    async def _catch_up(self, name: str, generation: int) -> None:
        if generation <= self.generations.get(name, 0):
            return
        self.generations[name] = generation
        if name not in self.repository.names():
            raise ModelNotFound(name)
        log.info("%s replica %s: reloading %s (generation %d)", self.family, os.getpid(), name, generation)
        await asyncio.to_thread(self.registry.load, name)

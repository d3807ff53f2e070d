"""The ingress's side of the Ray engine: a registry whose entries hold no runtime, only the way to the family
deployment whose replicas run them. Everything else — look-up, codecs, statistics, metrics, health, the
protocols' error formats — is the in-process gateway's own code.

Ray's failures become the gateway's named errors: a family's full queue (BackPressureError) is VariantBusy
(503 + Retry-After), a replica that died or cannot be reached mid-call is ModelNotReady (503: the call was
lost with it, a retry reaches a live replica), an error the replica raised arrives as itself.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from ray import exceptions as ray_errors
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError, ReplicaUnavailableError, RequestCancelledError

from crossdeploy.errors import CrossdeployError, InferenceFailed, ModelNotReady, VariantBusy, first_line
from crossdeploy.repository import ModelRepository, VariantConfig, VersionRecord

from ..registry import ModelRegistry, Served
from .families import FAMILY_OF_FORMAT, family_of

log = logging.getLogger("crossdeploy.gateway")
LOST = (ray_errors.RayActorError, ray_errors.ActorUnavailableError, ReplicaUnavailableError, DeploymentUnavailableError)
STATES_TIMEOUT_S = 900.0  # a family's first replica imports its framework and loads and warms every variant


class FamilyBusy(VariantBusy):
    """Ray refused the call: every replica of the variant's family is at max_ongoing_requests and the queue for
    them at max_queued_requests. The same 503 + Retry-After as the in-process queue budget."""

    def __init__(self, name: str, retry_after: int = 1):
        self.name, self.limit, self.retry_after = name, 0, retry_after
        CrossdeployError.__init__(self, f"model '{name}' is busy: its replicas and their queue are full; "
                                        f"retry after {retry_after} s")


class RemoteVariant:
    """One version of a variant as the ingress calls it: on whichever replica of its family Ray picks."""

    def __init__(self, registry: "RemoteRegistry", handle, name: str, version: VersionRecord, directory: Path):
        self.registry, self.handle, self.name = registry, handle, name
        self.version, self.directory = version, directory  # what health.artifact_drift re-checks

    async def infer(self, inputs: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], int]:
        """(outputs, ns the replica computed)."""
        generation = self.registry.generations.get(self.name, 0)
        try:
            return await self.handle.infer.remote(self.name, self.version.version, generation, inputs)
        except BackPressureError:
            raise FamilyBusy(self.name, self.registry.retry_after_s) from None
        except ray_errors.RayTaskError as exc:
            cause = exc.cause
            if isinstance(cause, CrossdeployError):
                raise cause from None
            if isinstance(cause, LOST):
                raise self._lost(cause) from None
            raise InferenceFailed(self.name, first_line(cause or exc)) from None
        except LOST as exc:
            raise self._lost(exc) from None
        except RequestCancelledError:
            raise ModelNotReady(self.name, "the call was cancelled by Ray before it ran; retry") from None

    def _lost(self, exc: BaseException) -> ModelNotReady:
        log.warning("%s: a replica was lost mid-call: %s", self.name, first_line(exc))
        return ModelNotReady(self.name, "the replica running this call was lost (Ray replaces it); retry")


class RemoteRegistry(ModelRegistry):
    """The ingress's registry: configs from the repository, load states as the family replicas report them."""

    def __init__(self, repository: ModelRepository, handles: dict[str, object], retry_after_s: int = 1):
        super().__init__(repository, threads=1)
        self.handles = handles
        self.retry_after_s = retry_after_s
        self.generations: dict[str, int] = {}
        self._reported: dict[str, dict] | None = None  # family -> states, while load_all runs
        self._fresh: tuple[str, dict] | None = None  # (family, states) one replica reported after a reload

    def load_all(self) -> None:
        responses = {family: handle.states.remote() for family, handle in self.handles.items()}
        self._reported = {}
        for family, response in responses.items():
            try:
                self._reported[family] = response.result(timeout_s=STATES_TIMEOUT_S)
            except Exception as exc:  # that family's replicas cannot start: its variants only are unavailable
                log.error("the %s model deployment did not report: %s", family, first_line(exc))
                self._reported[family] = {"": first_line(exc)}
        try:
            super().load_all()
        finally:
            self._reported = None

    def load(self, name: str) -> list[Served]:
        if self._reported is None:  # an explicit (re)load: one replica reloads now, the others at their next call
            try:
                family = family_of(self.repository.config(name).format)
            except CrossdeployError:
                family = None  # the config no longer reads: the base class keeps what serves and says why
            if family in self.handles:
                generation = self.generations[name] = self.generations.get(name, 0) + 1
                states = self.handles[family].reload.remote(name, generation).result(timeout_s=STATES_TIMEOUT_S)
                self._fresh = (family, {name: states})
        try:
            return super().load(name)
        finally:
            self._fresh = None

    def _report(self, family: str) -> dict:
        if self._fresh and self._fresh[0] == family:
            return self._fresh[1]
        return (self._reported or {}).get(family, {})

    def _load_version(self, name: str, config: VariantConfig, record: VersionRecord) -> Served:
        family = family_of(config.format)
        if family is None:
            reason = f"no runtime family runs format '{config.format}' (known: {', '.join(FAMILY_OF_FORMAT)})"
            return Served(name, record.version, config, None, "UNAVAILABLE", reason, limits=self.limits)
        report = self._report(family)
        state, reason, seconds = report.get(name, {}).get(record.version, (
            "UNAVAILABLE", report.get("", f"the {family} replicas did not load it"), 0.0))
        entry = Served(name, record.version, config, None, state, reason, seconds, limits=self.limits)
        entry.remote = RemoteVariant(self, self.handles[family], name, record, self.repository.version_dir(name, record.version))
        return entry

"""Who may load and unload models: nobody unless the gateway runs with model control "explicit" (Triton's
default is "none"), and then only a caller with the management token (`Authorization: Bearer <token>`).

The token is the operator's (CROSSDEPLOY_MANAGEMENT_TOKEN; never a command-line flag, which `ps` shows) or,
when none is given, generated at each start and written to a file only its owner can read, whose path the
gateway prints (as TorchServe does with key_file.json): the token itself never reaches a log. Loopback callers
are not exempt: a process on the same host, or a proxy in front of the gateway, is no proof of who is asking.
"""

from __future__ import annotations

import hmac
import os
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import Request
from prometheus_client import CollectorRegistry, Counter

from crossdeploy.errors import CrossdeployError, ManagementDisabled, RepositoryError, Unauthorized
from crossdeploy.repository import ModelRepository, index_digest
from crossdeploy.settings import Settings

REFUSALS = ("model_control_off", "no_token", "wrong_token")
HEX64 = re.compile(r"[0-9a-f]{64}")


@dataclass
class Management:
    mode: str
    token: str = field(default="", repr=False)
    token_file: Path | None = None  # where a generated token was written
    refused: Counter | None = None

    def authorize(self, request: Request) -> None:
        """Refuses (403 or 401, counted by reason) a request that may not load or unload."""
        if self.mode != "explicit":
            self._refuse("model_control_off", ManagementDisabled())
        scheme, _, credential = request.headers.get("authorization", "").partition(" ")
        credential = credential.strip()
        if scheme.lower() != "bearer" or not credential:
            self._refuse("no_token", Unauthorized())
        # Constant time, on bytes: a header is latin-1 text and compare_digest refuses non-ASCII str.
        if not hmac.compare_digest(credential.encode("latin-1"), self.token.encode()):
            self._refuse("wrong_token", Unauthorized())  # the same answer as no token: nothing to tell them apart

    def _refuse(self, reason: str, error: CrossdeployError) -> None:
        if self.refused is not None:
            self.refused.labels(reason).inc()
        raise error


def refused_counter(registry: CollectorRegistry) -> Counter:
    counter = Counter("crossdeploy_management_refused_total", "Load/unload requests refused, by reason",
                      ("reason",), registry=registry)
    for reason in REFUSALS:  # present at 0, so a rate over them works from the first scrape
        counter.labels(reason)
    return counter


def write_token(path: Path) -> str:
    """A fresh token in a new file only its owner can read or write: created 0600 (never chmod-ed after, which
    would leave a moment when it is readable); an old file is removed first, since O_CREAT keeps its mode."""
    token = secrets.token_urlsafe(32)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)
        handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(handle, "w") as out:
            out.write(token + "\n")
    except OSError as exc:
        raise CrossdeployError(f"cannot write the management token to {path}: {exc.strerror or exc}") from exc
    return token


def management_for(settings: Settings, registry: CollectorRegistry) -> Management:
    counter = refused_counter(registry)
    if settings.model_control_mode != "explicit":
        return Management("none", refused=counter)
    if settings.management_token:  # an empty value (compose's ${...:-}) means "not given"
        return Management("explicit", settings.management_token, refused=counter)
    path = settings.management_token_file or settings.workdir / "management_token"
    return Management("explicit", write_token(path), path, counter)


def pinned_repository(settings: Settings, repository: ModelRepository) -> ModelRepository:
    """The repository as the gateway reads it: sealed (model code only from version folders or crossdeploy) and,
    with an expected digest, pinned to the configs that digest covers; any other repository is refused here."""
    pinned = None
    if settings.expect_digest:  # an empty value (compose's ${...:-}) means "not given"
        expected = settings.expect_digest.strip().lower()
        if not HEX64.fullmatch(expected):
            raise RepositoryError(f"--expect-digest must be 64 hex digits (a sha256), got '{settings.expect_digest[:80]}'")
        pinned = repository.digests()
        actual = index_digest(pinned)
        if actual != expected:
            raise RepositoryError(f"model repository {repository.root} has digest {actual}, not the expected {expected}")
    return ModelRepository(repository.root, repository.keep_versions, sealed=True, pinned=pinned)


def describe(management: Management, pinned: bool) -> str:
    """One line for the start-up banner: the mode, and where the token is (never the token)."""
    if management.mode != "explicit":
        text = "model control: none (load/unload refused; --model-control-mode explicit enables them)"
    elif management.token_file is not None:
        text = f"model control: explicit; management token written to {management.token_file} (0600)"
    else:
        text = "model control: explicit; management token from CROSSDEPLOY_MANAGEMENT_TOKEN"
    return text + ("; repository pinned (--expect-digest)" if pinned else "")

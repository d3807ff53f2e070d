"""Named errors. They carry fields and know nothing about HTTP; one table (in serving) maps them to statuses."""

from __future__ import annotations

import re

ANSI = re.compile(r"\x1b\[[0-9;]*m")  # colour codes some tools put in their messages


def first_line(exc: BaseException, limit: int | None = 300) -> str:
    """An exception in one line: its first non-empty line (cut to `limit`), or its type when it says nothing."""
    text = str(exc).strip()
    return text.splitlines()[0][:limit] if text else type(exc).__name__


def first_lines(exc: BaseException, count: int = 4, width: int = 240) -> str:
    """A tool's own message: its first non-empty lines, each cut to `width`. A message that carries a traceback
    (TorchScript's) is led by its last line, which names the error."""
    lines = [line.strip()[:width] for line in ANSI.sub("", str(exc)).splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    if len(lines) > count and any("Traceback" in line for line in lines):
        return "\n".join([lines[-1], *lines[: count - 1]])
    return "\n".join(lines[:count])


def _restored(cls: type, args: tuple, state: dict) -> "CrossdeployError":
    exc = cls.__new__(cls)
    Exception.__init__(exc, *args)
    exc.__dict__.update(state)
    return exc


class CrossdeployError(Exception):
    """Base of every error crossdeploy expects and reports in one line."""

    def __reduce__(self):
        # Pickled whole (fields and message): an error raised in a Ray replica reaches the gateway as itself,
        # although most subclasses take other constructor arguments than their message.
        return _restored, (type(self), self.args, dict(self.__dict__))


class ConfigError(CrossdeployError):
    """A config or settings file that does not parse or does not validate."""

    def __init__(self, path: str, reason: str):
        self.path, self.reason = path, reason
        super().__init__(f"{path}: {reason}")


class RepositoryError(CrossdeployError):
    """The model repository itself is missing or malformed."""


class ModelNotFound(CrossdeployError):
    def __init__(self, name: str, version: int | None = None):
        self.name, self.version = name, version
        where = f"'{name}'" if version is None else f"'{name}' version {version}"
        super().__init__(f"model {where} is not in the repository")


class ModelNotReady(CrossdeployError):
    def __init__(self, name: str, reason: str):
        self.name, self.reason = name, reason
        super().__init__(f"model '{name}' is not ready: {reason}")


class InvalidInput(CrossdeployError):
    """The caller sent something the model contract does not accept."""


class ArtifactError(CrossdeployError):
    """An artifact file is missing, corrupted (sha256 mismatch) or cannot be loaded."""

    def __init__(self, variant: str, path: str, reason: str):
        self.variant, self.path, self.reason = variant, path, reason
        super().__init__(f"{variant}: {path}: {reason}")


class ExportError(CrossdeployError):
    """An exporter or converter failed for one pathway."""

    def __init__(self, variant: str, reason: str):
        self.variant, self.reason = variant, reason
        super().__init__(f"{variant}: export failed: {reason}")


class ParityError(CrossdeployError):
    """One or more variants breached their tolerance; `failures` holds one line per breach."""

    def __init__(self, failures: list[str]):
        self.failures = failures
        super().__init__("parity failed: " + "; ".join(failures))


class PayloadTooLarge(CrossdeployError):
    def __init__(self, limit: int):
        self.limit = limit
        super().__init__(f"request body exceeds the limit of {limit} bytes")


class UnsupportedMediaType(CrossdeployError):
    def __init__(self, content_type: str, accepted: list[str]):
        self.content_type, self.accepted = content_type, accepted
        super().__init__(f"content type '{content_type}' is not accepted here; use one of: {', '.join(accepted)}")


class Overloaded(CrossdeployError):
    def __init__(self, limit: int, retry_after: int = 1):
        self.limit, self.retry_after = limit, retry_after
        super().__init__(f"server busy: {limit} requests already in flight, retry after {retry_after} s")


class InferenceTimeout(CrossdeployError):
    """One inference ran past the deadline; the variant stays not ready until the call returns."""

    def __init__(self, name: str, seconds: float):
        self.name, self.seconds = name, seconds
        super().__init__(f"model '{name}' did not answer within {seconds:g} s")


class InferenceFailed(CrossdeployError):
    """The runtime raised while running a request that passed validation: the variant's fault, not the caller's."""

    def __init__(self, name: str, reason: str):
        self.name, self.reason = name, reason
        super().__init__(f"model '{name}' failed: {reason}")


class Unauthorized(CrossdeployError):
    """A management request without the right bearer token."""

    def __init__(self, reason: str = "a valid bearer token is required (Authorization: Bearer <token>)"):
        super().__init__(reason)


class ManagementDisabled(CrossdeployError):
    """Repository load/unload while the gateway runs with model control off."""

    def __init__(self):
        super().__init__("model control is off: start the gateway with --model-control-mode explicit to load or unload")


class VariantBusy(Overloaded):
    """One variant's queue already holds more work than its budget: that variant refuses, the others serve."""

    def __init__(self, name: str, queued: int, retry_after: int = 1):
        self.name, self.limit, self.retry_after = name, queued, retry_after
        CrossdeployError.__init__(self, f"model '{name}' is busy: {queued} calls are queued ahead, more than its "
                                        f"queue budget; retry after {retry_after} s")

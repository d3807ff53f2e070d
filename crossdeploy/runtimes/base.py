"""The runtime adapter interface: the only code that loads and runs an artifact.

Like MLServer's runtimes: the constructor takes the validated config and does no I/O; `load()` verifies
every artifact file's sha256 against the config before opening anything; `predict()` sees only numpy
arrays keyed by the signature's names. Batches larger than a format's fixed cap are split here.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np

from crossdeploy.errors import ArtifactError, InvalidInput, ModelNotReady, first_line
from crossdeploy.repository import VariantConfig, VersionRecord, sha256_of

from crossdeploy.repository import V2_TO_NUMPY as DTYPES


class Runtime(ABC):
    file: str = ""  # the artifact inside the version folder this adapter opens

    def __init__(self, config: VariantConfig, version: VersionRecord, directory: Path, threads: int = 2):
        self.config = config
        self.version = version
        self.directory = Path(directory)
        self.threads = threads
        self.ready = False

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def artifact(self) -> Path:
        return self.directory / self.file

    def verify(self) -> None:
        """Refuses a missing file or one whose bytes do not match the sha256 recorded in the config."""
        for record in self.version.files:
            path = self.directory / record.path
            if not path.is_file():
                raise ArtifactError(self.name, str(path), "artifact file is missing")
            actual = sha256_of(path)
            if actual != record.sha256:
                raise ArtifactError(
                    self.name, str(path), f"sha256 mismatch: config says {record.sha256[:12]}…, file is {actual[:12]}…"
                )

    def load(self) -> "Runtime":
        self.verify()
        try:
            self._load()
        except ArtifactError:
            raise
        except Exception as exc:  # each framework raises its own types; name the file, keep the cause
            raise ArtifactError(self.name, str(self.artifact), f"cannot load: {first_line(exc)}") from exc
        self.ready = True
        return self

    def unload(self) -> None:
        self._unload()
        self.ready = False

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Checks `inputs` against the contract (names, dtypes, shapes, a non-empty batch), then runs them."""
        return self.predict_validated(self._validate(inputs))

    def predict_validated(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Runs inputs the caller has already checked against the contract: contiguous arrays of the signature's
        names, dtypes and shapes with a non-empty batch. The gateway's codecs check each input once on the way
        in and call this; everyone else calls `predict`."""
        if not self.ready:
            raise ModelNotReady(self.name, "not loaded")
        batch = next(iter(arrays.values())).shape[0]
        cap = self.config.max_batch
        if cap is None or batch <= cap:
            return self._run(arrays)
        parts = [self._run({k: v[i : i + cap] for k, v in arrays.items()}) for i in range(0, batch, cap)]
        return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}

    def _validate(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        expected = {s.name for s in self.config.inputs}
        if set(inputs) != expected:
            raise InvalidInput(f"{self.name} expects inputs {sorted(expected)}, got {sorted(inputs)}")
        arrays = {}
        for spec in self.config.inputs:
            array = np.asarray(inputs[spec.name])
            if array.dtype != DTYPES[spec.datatype]:
                raise InvalidInput(f"{self.name}: input '{spec.name}' must be {spec.datatype}, got {array.dtype}")
            if array.ndim != len(spec.shape) or any(d not in (-1, a) for d, a in zip(spec.shape, array.shape)):
                raise InvalidInput(f"{self.name}: input '{spec.name}' must have shape {list(spec.shape)}, got {list(array.shape)}")
            if array.shape[0] == 0:
                raise InvalidInput(f"{self.name}: input '{spec.name}' has an empty batch")
            arrays[spec.name] = np.ascontiguousarray(array)
        return arrays

    def _outputs(self, values) -> dict[str, np.ndarray]:
        """Names the artifact's outputs (in signature order) after the contract's output names."""
        names = [s.name for s in self.config.outputs]
        if len(values) != len(names):
            raise ArtifactError(self.name, str(self.artifact), f"artifact returned {len(values)} outputs, contract has {len(names)}")
        return {name: np.ascontiguousarray(value, dtype=DTYPES[spec.datatype]) for name, value, spec in zip(names, values, self.config.outputs)}

    @abstractmethod
    def _load(self) -> None: ...

    @abstractmethod
    def _run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    def _unload(self) -> None:
        for attribute in ("session", "model", "interpreter", "method"):
            if hasattr(self, attribute):
                delattr(self, attribute)

"""A Triton-style model repository: <root>/<variant>/<version>/<files>, config.json beside the versions.

Imports neither torch nor TensorFlow. A malformed entry fails loudly, naming the variant and file.
Writes are atomic: an export lands in <root>/.staging first and is moved into place by os.replace.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from pydantic import ValidationError

from crossdeploy.errors import ConfigError, ModelNotFound, RepositoryError

from .config import CONFIG, FileRecord, ParityResult, VariantConfig, VersionRecord
from .integrity import PinMismatch, check_entry, check_files, check_listed, index_digest, variant_digest, variant_digests

STAGING = ".staging"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def record_files(folder: Path) -> list[FileRecord]:
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    return [FileRecord(path=p.relative_to(folder).as_posix(), sha256=sha256_of(p), size=p.stat().st_size) for p in files]


def _write_atomic(path: Path, text: str) -> None:
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=".config-", suffix=".tmp")
    with os.fdopen(handle, "w") as out:
        out.write(text)
    os.replace(tmp, path)


class ModelRepository:
    """`sealed`: configs may name model code only from their version folders or the crossdeploy package (what
    a gateway serves). `pinned`: each variant's config digest as the pinned repository digest covers it; any
    other config is refused (see integrity.py)."""

    def __init__(self, root: Path | str, keep_versions: int = 2, *, sealed: bool = False,
                 pinned: dict[str, str | None] | None = None):
        self.root = Path(root)
        self.keep_versions = keep_versions
        self.sealed = sealed
        self.pinned = pinned

    def exists(self) -> bool:
        return self.root.is_dir()

    def _require(self) -> None:
        if not self.root.is_dir():
            raise RepositoryError(f"model repository {self.root} does not exist (run `crossdeploy export` first)")

    def names(self) -> list[str]:
        self._require()
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))

    def config(self, name: str) -> VariantConfig:
        self._require()
        path = self.root / name / CONFIG
        if not (self.root / name).is_dir():
            raise ModelNotFound(name)
        if not path.is_file():
            raise ConfigError(str(path), f"variant '{name}' has no {CONFIG}")
        raw = path.read_bytes()
        if self.pinned is not None and self.pinned.get(name) != variant_digest(raw):
            raise PinMismatch(str(path), f"variant '{name}': the config is not the one the pinned repository "
                                         "digest covers (--expect-digest)")
        try:
            config = VariantConfig.model_validate_json(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "(root)"
            raise ConfigError(str(path), f"variant '{name}': {where}: {first['msg']}") from exc
        except (ValueError, UnicodeDecodeError) as exc:
            raise ConfigError(str(path), f"variant '{name}': not valid JSON ({exc})") from exc
        check_files(self.root, name, config, str(path))
        if self.sealed:
            check_listed(self.root, name, config, str(path))
            check_entry(config, str(path))
        return config

    def digests(self) -> dict[str, str | None]:
        """Each variant's config digest (None: no config); `digest()` is the repository's, over all of them."""
        return variant_digests(self.root, self.names())

    def digest(self) -> str:
        return index_digest(self.digests())

    def list(self) -> list[VariantConfig]:
        return [self.config(name) for name in self.names()]

    def get(self, name: str, version: int | None = None) -> tuple[VariantConfig, VersionRecord]:
        config = self.config(name)
        if not config.versions:
            raise ConfigError(str(self.root / name / CONFIG), f"variant '{name}' lists no versions")
        return config, config.version(version)

    def version_dir(self, name: str, version: int) -> Path:
        return self.root / name / str(version)

    def staging_dir(self, name: str) -> Path:
        """A fresh folder on the repository's file system, so moving it into place is atomic."""
        base = self.root / STAGING
        base.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(dir=base, prefix=f"{name}-"))

    def write_config(self, config: VariantConfig) -> None:
        folder = self.root / config.name
        folder.mkdir(parents=True, exist_ok=True)
        _write_atomic(folder / CONFIG, config.model_dump_json(indent=2) + "\n")

    def add(self, template: VariantConfig, staged: Path) -> tuple[VersionRecord, bool]:
        """Adds `staged` as a new version unless its bytes equal the latest version's; returns (version, added)."""
        files = record_files(staged)
        if not files:
            raise RepositoryError(f"{template.name}: the export wrote no files into {staged}")
        previous = self.config(template.name) if (self.root / template.name / CONFIG).is_file() else None
        if previous and previous.versions:
            latest = previous.latest()
            if [(f.path, f.sha256) for f in latest.files] == [(f.path, f.sha256) for f in files]:
                shutil.rmtree(staged)
                return latest, False
        versions = list(previous.versions) if previous else []
        number = max((v.version for v in versions), default=0) + 1
        target = self.version_dir(template.name, number)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():  # a leftover of an interrupted run that never reached the config
            shutil.rmtree(target)
        os.replace(staged, target)
        record = VersionRecord(version=number, created=datetime.now(timezone.utc), files=files)
        versions.append(record)
        kept = sorted(versions, key=lambda v: v.version)[-self.keep_versions :]
        self.write_config(template.model_copy(update={"versions": kept}))
        for old in versions:
            if old not in kept:
                shutil.rmtree(self.version_dir(template.name, old.version), ignore_errors=True)
        return record, True

    def set_parity(self, name: str, version: int, parity: ParityResult) -> None:
        config = self.config(name)
        updated = [v.model_copy(update={"parity": parity}) if v.version == version else v for v in config.versions]
        self.write_config(config.model_copy(update={"versions": updated}))

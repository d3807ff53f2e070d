"""What a gateway may trust in a repository: every file a config names lies inside its version folder (symlinks
followed), the model code an `entry` names comes from the version folder or the crossdeploy package, and the
repository's digest (a sha256 over every variant's config, file digests included) pins what is served.

Model code carried in a version folder: an entry `module:function` whose module has no dots and whose file
`<module>.py` is one of the version's files. It is then covered by the version's sha256s like any artifact.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from crossdeploy.errors import ConfigError

from .config import CONFIG, FileRecord, VariantConfig, VersionRecord

PACKAGE = "crossdeploy"


class PinMismatch(ConfigError):
    """A config that differs from the one the pinned repository digest covers (or a variant it does not cover)."""


def carried_module(config: VariantConfig, record: VersionRecord) -> FileRecord | None:
    """The file of the version that holds the entry's module, when the version carries it."""
    if not config.entry:
        return None
    module = config.entry.partition(":")[0]
    if "." in module:
        return None
    return next((f for f in record.files if f.path == f"{module}.py"), None)


def packaged(entry: str) -> bool:
    module = entry.partition(":")[0]
    return module == PACKAGE or module.startswith(PACKAGE + ".")


def check_files(root: Path, name: str, config: VariantConfig, where: str) -> None:
    """Every version folder inside the repository, every file it lists inside its version folder once symlinks
    are resolved: a config cannot make the gateway hash or open a file elsewhere."""
    base = root.resolve()
    for record in config.versions:
        folder = (root / name / str(record.version)).resolve()
        if not folder.is_relative_to(base):
            raise ConfigError(where, f"variant '{name}': version {record.version}'s folder leads out of the repository")
        for file in record.files:
            if not (folder / file.path).resolve().is_relative_to(folder):
                raise ConfigError(where, f"variant '{name}': file '{file.path}' of version {record.version} "
                                         "leads out of its version folder")


def check_listed(root: Path, name: str, config: VariantConfig, where: str) -> None:
    """A version folder holds the files its config lists and nothing else: a framework that opens a folder (a
    SavedModel) would also read a file no sha256 covers."""
    for record in config.versions:
        folder = root / name / str(record.version)
        listed = {file.path for file in record.files}
        extra = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                       if not p.is_dir() and p.relative_to(folder).as_posix() not in listed)
        if extra:
            raise ConfigError(where, f"variant '{name}': version {record.version} holds a file its config does not "
                                     f"list: '{extra[0]}'")


def check_entry(config: VariantConfig, where: str) -> None:
    """The entry's module comes from the crossdeploy package or from the version folder, never from wherever
    sys.path would find it."""
    if not config.entry or packaged(config.entry):
        return
    for record in config.versions:
        if carried_module(config, record) is None:
            module = config.entry.partition(":")[0]
            raise ConfigError(where, f"variant '{config.name}': entry module '{module}' is neither in the {PACKAGE} "
                                     f"package nor a file of version {record.version} ('{module}.py' in its files)")


def variant_digest(raw: bytes) -> str:
    """sha256 of a config.json in canonical form (keys sorted, no spaces): formatting does not count, content does."""
    try:
        canonical = json.dumps(json.loads(raw), sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    except (ValueError, UnicodeDecodeError):
        canonical = raw  # a config that does not parse still has a digest: its bytes
    return hashlib.sha256(canonical).hexdigest()


def variant_digests(root: Path, names: list[str]) -> dict[str, str | None]:
    """Each variant's config digest; None for a variant folder without a config."""
    digests: dict[str, str | None] = {}
    for name in names:
        path = root / name / CONFIG
        digests[name] = variant_digest(path.read_bytes()) if path.is_file() else None
    return digests


def index_digest(digests: dict[str, str | None]) -> str:
    """The repository's digest: sha256 over one line per variant, `<name> <config digest>`, in name order."""
    lines = "".join(f"{name} {digests[name] or '-'}\n" for name in sorted(digests))
    return hashlib.sha256(lines.encode()).hexdigest()

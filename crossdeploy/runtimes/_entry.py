"""The model code a config's `entry` names ("module:function"), for formats that hold weights only (torch-eager)
or need their custom classes registered (a .keras file).

A module the version carries (`<module>.py` among its files, see crossdeploy.repository.integrity) is executed
from that file, after `Runtime.verify` checked its sha256; any other module is imported by name. A gateway's
repository is sealed, so there the second case is only ever the crossdeploy package.
"""

from __future__ import annotations

import hashlib
import importlib
import sys
from pathlib import Path
from types import ModuleType

from crossdeploy.repository import VariantConfig, VersionRecord, carried_module


def _from_file(path: Path, sha256: str) -> ModuleType:
    # Named after its bytes: a reload of the same code reuses the module, changed code gets a module of its own,
    # and two variants carrying a module of the same name do not overwrite each other in sys.modules.
    name = f"_crossdeploy_entry_{sha256[:16]}"
    if name in sys.modules:
        return sys.modules[name]
    # The bytes are read once, checked and compiled: no import machinery, so no __pycache__ beside them (a .pyc
    # no sha256 covers would be preferred to the source on the next load) and no swap after the check.
    source = path.read_bytes()
    if hashlib.sha256(source).hexdigest() != sha256:
        raise ImportError(f"{path} changed after its sha256 was checked")
    module = ModuleType(name)
    module.__file__ = str(path)
    sys.modules[name] = module  # before executing: dataclasses and pickling look the module up by name
    try:
        exec(compile(source, str(path), "exec"), module.__dict__)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def entry_module(config: VariantConfig, version: VersionRecord, directory: Path) -> ModuleType:
    carried = carried_module(config, version)
    if carried is not None:
        return _from_file(directory / carried.path, carried.sha256)
    return importlib.import_module(config.entry.partition(":")[0])


def entry_function(config: VariantConfig, version: VersionRecord, directory: Path):
    return getattr(entry_module(config, version, directory), config.entry.partition(":")[2])

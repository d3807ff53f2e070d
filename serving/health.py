"""Health that is measured, not assumed: a version is ready when it loaded, no call of it is running past the
inference deadline, and its last probe passed. A probe is a real batch-1 inference of the version's signature,
run on its own executor under the deadline (never on the event loop), plus a re-check of the version folder's
files against the config's sha256. Probes run when a ready endpoint is asked, at most once per
`probe_interval_s` per version (concurrent askers share one), so health checks cannot become load.

An artifact that changed or vanished on disk does not make a version unready: the runtime serves the copy it
loaded, and a probe proves it answers. It is said instead (`reason`, the index, TF Serving's status): the next
reload of that version fails, and leaves the loaded copy serving (Triton's rule, serving/registry.py).
"""

from __future__ import annotations

import asyncio
import os
import time

import numpy as np

from crossdeploy.errors import CrossdeployError, InferenceTimeout, Overloaded
from crossdeploy.repository import sha256_of

from .execution import on_executor, remotely
from .registry import Health, ModelRegistry, Retired, Served, probe_inputs

PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


async def check(served: Served) -> Health:
    """The version's health now: the last probe when younger than the probe interval, else a fresh one."""
    if not served.loaded:
        return Health(False, served.load_reason)
    if served.stalled:  # a probe would only queue behind the call that overran
        return Health(False, served.reason)
    last = served.health
    if last is not None and time.monotonic() - last.at < served.limits.probe_interval_s:
        return last
    if served.probing is None:
        served.probing = probing = asyncio.ensure_future(_probe(served))
        probing.add_done_callback(lambda _: setattr(served, "probing", None))
    return await asyncio.shield(served.probing)


async def check_all(registry: ModelRegistry) -> list[Served]:
    """Every served version, each checked (concurrently: each probe runs on its own version's executor)."""
    entries = registry.all()
    await asyncio.gather(*(check(entry) for entry in entries))
    return entries


def server_ready(entries: list[Served]) -> bool:
    """Triton's strict readiness over what the gateway serves: every version that loaded is ready now. A
    version that never loaded is reported (models_unavailable, its own ready endpoint) but does not hold the
    server unready: it is not served, and a missing framework would otherwise keep the gateway unready forever."""
    loaded = [e for e in entries if e.loaded]
    return bool(loaded) and all(e.ready for e in loaded)


async def _probe(served: Served) -> Health:
    reason = ""
    try:
        if served.remote is not None:  # one replica of its family answers (serving/ray_engine)
            outputs = (await remotely(served, probe_inputs(served.config)))[0]
        else:
            outputs = (await on_executor(served, probe_inputs(served.config), lambda inputs: _measured(served, inputs)))[0]
        if set(outputs) != set(served.output_names) or any(v.shape[:1] != (1,) for v in outputs.values()):
            reason = "the health probe's outputs do not match the signature"
    except Retired:
        reason = "replaced by a reload"
    except Overloaded:
        pass  # the Ray engine's family refused the probe because its queue is full: busy, not broken
    except InferenceTimeout as exc:
        reason = f"the health probe's inference timed out: {exc}"
    except CrossdeployError as exc:
        reason = f"the health probe's inference failed: {exc}"
    served.drift = await asyncio.to_thread(artifact_drift, served)
    served.health = Health(not reason, reason, time.monotonic())
    return served.health


def _rss() -> int:
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * PAGE
    except OSError:  # not Linux: no cheap reading of the resident set
        return 0


def _measured(served: Served, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    before = _rss()
    try:
        return served.runtime.predict_validated(inputs)
    finally:
        served.probe_rss_growth += max(_rss() - before, 0)


def artifact_drift(served: Served) -> str:
    """What changed in the version folder since load, or "" (a file is re-hashed only when its stat changed)."""
    runtime = served.runtime or served.remote  # either knows its version record and folder
    for record in runtime.version.files:
        path = runtime.directory / record.path
        try:
            stat = path.stat()
        except OSError:
            return f"{record.path} is gone from disk since load: the copy in memory serves; a reload would fail"
        key = (stat.st_size, stat.st_mtime_ns, stat.st_ino)
        if served.file_stats.get(record.path) == key:
            continue
        if sha256_of(path) != record.sha256:
            served.file_stats.pop(record.path, None)
            return (f"{record.path} changed on disk since load (its sha256 no longer matches the config): the copy "
                    "in memory serves; a reload would fail")
        served.file_stats[record.path] = key
    return ""

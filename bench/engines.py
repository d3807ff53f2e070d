"""The gateway engines side by side: each one started as its own `crossdeploy serve --engine E` process (one at
a time: the machine's cores are shared with the load generator), timed from launch to ready, and its memory
read after the sweep from the server's process tree.

Memory is measured per process as PSS and RSS (psutil, from /proc/<pid>/smaps_rollup). PSS splits a page shared
by n processes n ways, so a group's PSS adds up to what it really costs; RSS counts shared libraries in full in
every process that maps them. On Ray, the processes are grouped by what they are: a Serve replica by its
deployment (its process title is `ray::ServeReplica:<app>:<deployment>`), the `crossdeploy serve` process that
started the cluster as "driver", and every other process of the tree (raylet, GCS, Serve controller, HTTP
proxy, dashboard and runtime-env agents, idle workers) as "ray".
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import psutil

from crossdeploy.errors import ConfigError

from .results import EngineRun, ProcessGroup
from .servers import free_port, start

ENGINES = ("inprocess", "ray")
REPLICA = re.compile(r"ServeReplica:[^:\s]+:(?P<deployment>\S+)")
MB = 2 ** 20


def choose(engines: list[str] | None, *, quick: bool, partial: bool, url: str | None) -> list[str]:
    """The engines to measure: as asked; else both on a full run, and only the in-process one on a quick or
    partial run (the Ray engine's start alone costs about half a minute)."""
    if url:
        if engines:
            raise ConfigError("--engines", "not with --url: the bench measures the server at the URL as it is")
        return []
    if engines:
        if bad := [e for e in engines if e not in ENGINES]:
            raise ConfigError("--engines", f"unknown: {', '.join(bad)} (known: {', '.join(ENGINES)})")
        return list(dict.fromkeys(engines))
    return ["inprocess"] if quick or partial else list(ENGINES)


def launch(repository: Path, engine: str, log: Path) -> tuple[subprocess.Popen, str, float]:
    """Starts the gateway on `engine` and returns it, its base URL, and the seconds from launch to ready."""
    port = free_port()
    env = dict(os.environ)
    env.pop("RAY_ADDRESS", None)  # the cold start includes the engine's own cluster, never a running one's
    command = [sys.executable, "-m", "crossdeploy.cli", "serve", "--engine", engine, "--port", str(port),
               "--repository", str(repository)]
    launched = time.perf_counter()
    server = start(command, f"http://127.0.0.1:{port}/v2/health/ready", log, env=env)
    return server, f"http://127.0.0.1:{port}", time.perf_counter() - launched


def group_of(process: psutil.Process, root: int, engine: str) -> str:
    if engine != "ray":
        return "gateway"
    if process.pid == root:
        return "driver"
    replica = REPLICA.search(" ".join(process.cmdline()))
    return replica.group("deployment") if replica else "ray"


def short_name(process: psutil.Process) -> str:
    """What a Ray process is, as `ps` would show it: the actor's title, or the executable or script."""
    line = process.cmdline()
    if line and line[0].startswith("ray::"):
        return line[0].removeprefix("ray::").split(".")[0]
    script = next((Path(a).stem for a in line[1:] if a.endswith(".py")), None)
    return script or process.name()


def memory(pid: int, engine: str) -> list[ProcessGroup]:
    """The server's process tree, grouped (see the module's docstring); the largest group first, "ray" last."""
    root = psutil.Process(pid)
    groups: dict[str, dict] = {}
    for process in [root, *root.children(recursive=True)]:
        try:
            name = group_of(process, pid, engine)
            member = short_name(process)
            rss = process.memory_info().rss
            try:
                pss = process.memory_full_info().pss
            except (psutil.AccessDenied, AttributeError):
                pss = None
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            continue  # a short-lived helper that exited while the tree was walked
        group = groups.setdefault(name, {"processes": 0, "rss": 0, "pss": 0, "members": []})
        group["processes"] += 1
        group["rss"] += rss
        group["pss"] = None if pss is None or group["pss"] is None else group["pss"] + pss
        group["members"].append(member)
    found = [ProcessGroup(name=name, processes=g["processes"], rss_mb=g["rss"] / MB,
                          pss_mb=g["pss"] / MB if g["pss"] is not None else None,
                          members=sorted(set(g["members"])) if name == "ray" else [])
             for name, g in groups.items()]
    return sorted(found, key=lambda g: (g.name == "ray", g.name == "driver", -(g.pss_mb or g.rss_mb)))


def engine_run(engine: str, cold_start_s: float, pid: int) -> EngineRun:
    return EngineRun(engine=engine, cold_start_s=cold_start_s, memory=memory(pid, engine))

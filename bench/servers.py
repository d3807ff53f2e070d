"""Server processes for the benchmarks: a free loopback port, a process started and waited on until its ready
URL answers, and a stop that never leaves one behind — nor any process it started (a Ray engine's raylet, GCS and
replicas are its descendants)."""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import psutil

from crossdeploy.errors import CrossdeployError

READY_TIMEOUT_S = 600  # the gateway loads every variant, TensorFlow's among them, on a machine that may be busy
POLL_S = 0.2  # how often readiness is asked: also the resolution of the engines' cold start
STOP_S = 30  # for the server, then for what it started, to exit on their own before they are killed


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(command: list[str], ready_url: str, log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """Starts `command` with its output in `log` and returns once `ready_url` answers 200."""
    with open(log, "w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise CrossdeployError(f"{' '.join(command[:4])} exited with {process.returncode}; see {log}")
        try:
            with urllib.request.urlopen(ready_url, timeout=2) as response:
                if response.status == 200:
                    return process
        except OSError:
            time.sleep(POLL_S)
    stop([process])
    raise CrossdeployError(f"{' '.join(command[:4])} did not become ready in {READY_TIMEOUT_S} s; see {log}")


def descendants(process: subprocess.Popen) -> list[psutil.Process]:
    try:
        return psutil.Process(process.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def stop(processes: list[subprocess.Popen], grace_s: float = STOP_S) -> None:
    """SIGTERM, so each server tears down what it started; whatever is still alive after `grace_s` is killed."""
    started = [child for process in processes for child in descendants(process)]
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(grace_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    _, alive = psutil.wait_procs(started, timeout=grace_s)
    for child in alive:
        try:
            child.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=grace_s)

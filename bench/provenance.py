"""Where a benchmark ran: the machine and the code's git revision, recorded in every report."""

from __future__ import annotations

import os
import platform
import subprocess

from .results import Machine


def machine() -> Machine:
    import psutil

    processor = platform.processor()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            processor = next(line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return Machine(platform=platform.platform(), processor=processor or "unknown", cores=os.cpu_count() or 0,
                   memory_gb=round(psutil.virtual_memory().total / 2**30, 1), python=platform.python_version())


def git_revision() -> str:
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], capture_output=True, text=True).stdout.strip()
        return rev + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"

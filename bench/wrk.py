"""wrk, driven from Python: one Lua script per pre-encoded request, whose `done` hook prints the summary as one
JSON line (requests, errors, p50/p90/p99 in µs), and wrk's own CPU time so a starved load generator
shows in the report."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from crossdeploy.errors import CrossdeployError

from .requests import HttpRequest

INSTALL_HINT = "wrk is not installed: `sudo apt-get install wrk` (Debian/Ubuntu) or `brew install wrk` (macOS)"
LUA = """
wrk.method = "POST"
local f = assert(io.open("%(body)s", "rb")); wrk.body = f:read("*a"); f:close()
%(headers)s
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('{"requests":%%d,"duration_us":%%d,"errors":%%d,"p50_us":%%d,"p90_us":%%d,"p99_us":%%d,"mean_us":%%f}\\n',
    summary.requests, summary.duration, e.status + e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.mean))
end
"""


def require_wrk() -> None:
    if not shutil.which("wrk"):
        raise CrossdeployError(INSTALL_HINT)


def script(folder: Path, label: str, request: HttpRequest) -> Path:
    """A Lua script sending `request`'s body and headers (wrk adds Host and Content-Length)."""
    body = folder / f"{label}.body"
    body.write_bytes(request.body)
    headers = "\n".join(f'wrk.headers["{k}"] = "{v}"' for k, v in request.headers.items())
    path = folder / f"{label}.lua"
    path.write_text(LUA % {"body": body, "headers": headers})
    return path


def run_wrk(url: str, lua: Path, connections: int, seconds: float) -> dict:
    """One wrk run with one thread (the other core is the server's): its summary, req/s and its own CPU seconds."""
    command = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "10s", "-s", str(lua), url]
    before = os.times()
    completed = subprocess.run(command, capture_output=True, text=True)
    after = os.times()  # reaped children's CPU: this wrk's (and a neighbour's, if one ended meanwhile)
    if completed.returncode:
        raise CrossdeployError(f"wrk failed: {completed.stderr.strip() or completed.stdout.strip()}")
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    result["wrk_cpu_s"] = (after.children_user + after.children_system) - (before.children_user + before.children_system)
    return result

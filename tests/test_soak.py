"""The soak's two-minute form on the real repository (every variant, every protocol): capacity, 4x overload and
back, through `python -m crossdeploy.bench.soak` as `make soak` runs it. What it proves here is behaviour, not
speed: every answer is a 200 or a 503 carrying Retry-After (no 5xx, no timeout, no reset), the overload was real
(refusals happened), the gateway served again after it, and the report, its Markdown and its plots are written.
Its figures (goodput share, p99, RSS growth) are the benchmark's business: docs/reliability.md, make soak."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from crossdeploy.docs_sources import soak_report

pytestmark = pytest.mark.slow


def test_two_minutes_of_capacity_overload_and_back(repository, tmp_path):
    out = tmp_path / "soak"
    run = subprocess.run([sys.executable, "-m", "crossdeploy.bench.soak", "--minutes", "2", "--repository",
                          str(repository.root), "--out", str(out)], capture_output=True, text=True, timeout=900)
    assert run.returncode in (0, 1), run.stderr[-2000:]  # 1: a figure missed its target, which is the bench's to say
    report = json.loads((out / "report.json").read_text())
    assert {p.name for p in out.iterdir()} >= {"report.json", "report.md", "answers.png", "latency.png", "rss.png"}
    kinds = report["kinds"]
    assert set(kinds) <= {"ok", "503", "reset"}, kinds  # no 5xx, timeout, or 503 without Retry-After
    # Connection resets under overload are a known fault, not fixed yet: 26 in 2.6 M answers in the 30-minute soak
    # (docs/reliability.md, "NOT MET"). Here they are bounded, so that a regression that multiplies them fails.
    assert kinds.get("reset", 0) <= sum(kinds.values()) * 1e-4, kinds
    phases = report["phases"]
    assert [p["name"] for p in phases] == ["capacity", "overload", "back"]
    assert phases[1]["kinds"].get("503", 0) > 0  # the overload was real
    assert phases[2]["goodput_per_s"] > 0 and phases[2]["recovery_s"] is not None
    assert len(report["mix"]) == 4 * len(repository.names())
    assert report["rss"]["growth"] is not None and all(row["rss_mb"] for row in report["timeline"])
    assert "| overload |" in (out / "report.md").read_text()
    docs = tmp_path / "docs"  # what make docs puts in docs/reliability.md: the report's Markdown, its plots beside
    docs.mkdir()
    region = soak_report(out / "report.json", docs)
    assert "| overload |" in region and "](soak/answers.png)" in region and not region.startswith("# ")
    assert (docs / "soak" / "answers.png").read_bytes() == (out / "answers.png").read_bytes()

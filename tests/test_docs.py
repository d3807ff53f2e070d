"""`make docs`: the project's own pages in docs/, filled from reports written by the real report writers; every
region replaced with the report's own Markdown, a second run changes nothing, a missing report names its command."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

from crossdeploy.docs import write_docs
from crossdeploy.errors import ConfigError

from .test_bench_report import make_report

DOCS = Path(__file__).resolve().parents[1] / "docs"


def region(page: Path, name: str) -> str:
    text = page.read_text()
    start = text.index(f"<!-- generated: {name} -->\n") + len(f"<!-- generated: {name} -->\n")
    return text[start:text.index("<!-- /generated -->", start)]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def docs(tmp_path) -> Path:
    """A copy of the project's docs/ with every generated region emptied, as a page is first written."""
    copy = tmp_path / "docs"
    shutil.copytree(DOCS, copy, ignore=shutil.ignore_patterns("*.png"))
    import re

    for page in copy.glob("*.md"):
        page.write_text(re.sub(r"(<!-- generated: [\w-]+ -->\n).*?(<!-- /generated -->)", r"\1\2", page.read_text(), flags=re.S))
    return copy


def parity_report(repository, reports: Path) -> None:
    from crossdeploy.export.parity import run_parity
    from crossdeploy.export.reports import write_reports

    write_reports(run_parity(repository, ["torch-eager", "torch-onnx"], 1, {}), reports / "parity")


def matrix_report(reports: Path) -> str:
    from crossdeploy.export.matrix_report import markdown, write_reports
    from crossdeploy.export.matrix_results import MatrixRun, PathwayResult, SpecRun

    spec = SpecRun(name="tiny", framework="pytorch", path="tiny.toml", description="a tiny model", samples=8, labels=True,
                   source_accuracy=0.75, seconds=3.0, workers=1, log="tiny.log")
    results = [PathwayResult(model="tiny", framework="pytorch", pathway="torch-onnx", status="ok", required=True, step="parity",
                             variant="tiny-torch-onnx", version=1, size_bytes=2048, max_abs=1.5e-6, agreement=1.0,
                             accuracy=0.75, p50_ms=0.02, chain="torch → torch.onnx (dynamo)", dynamic_batch=True,
                             notes=["a note the report keeps"]),
               PathwayResult(model="tiny", framework="pytorch", pathway="torch-tflite", status="conversion failed",
                             required=False, step="export", message="onnx2tf: Cannot take the length of shape | unknown rank")]
    curve = reports / "matrix" / "int8" / "tiny-torch-onnx-int8"
    curve.mkdir(parents=True)
    for name in ("keep_float.png", "sensitivity.png", "sensitivity.md"):
        (curve / name).write_bytes(f"the sensitivity run's {name}".encode())
    (curve / "models").mkdir()  # the re-quantized files stay with the report, not in docs/
    points = [{"keep_float": n, "kept": ["node_Gemm"][:n], "accuracy": 0.75, "agreement": 1.0 - 0.125 * (1 - n),
               "max_abs": 0.2 / (1 + n), "mean_abs": 0.05, "size": 1000 + 900 * n} for n in (0, 1)]
    results.append(PathwayResult(model="tiny", framework="pytorch", pathway="torch-onnx-int8", status="ok", required=True,
                                 step="parity", variant="tiny-torch-onnx-int8", int8_curve={
                                     "float_variant": "tiny-torch-onnx", "float_accuracy": 0.75, "float_size": 2048,
                                     "points": points, "ranked": ["node_Gemm"], "plot": str(curve / "keep_float.png"),
                                     "report": str(curve / "sensitivity.md")}))
    run = MatrixRun(specs=[spec], results=results, created="2026-12-01T00:00:00+00:00", timeout=600.0)
    write_reports(run, reports / "matrix")
    return markdown(run, curves=False)


def gateway_report(reports: Path) -> None:
    from crossdeploy.bench.floor_results import GatewayCode, GatewayFloorReport, WrkRun
    from crossdeploy.bench.gateway_floor import check_targets, summarize, write
    from crossdeploy.bench.provenance import machine

    runs = [WrkRun(target=target, concurrency=c, repeat=r, rps=rps * (1 + r / 100), p50_ms=c / rps * 1e3, p90_ms=c / rps * 1.3e3,
                   p99_ms=c / rps * 2e3, requests=int(rps * 2), errors=0, server_cpu_cores=0.95, wrk_cpu_cores=0.2)
            for c in (1, 8, 32) for target, rps in (("floor", 4000.0), ("gateway", 3700.0)) for r in range(2)]
    summary = summarize(runs)
    report = GatewayFloorReport(created=datetime.now(timezone.utc), model="torch-onnx", model_sha256="0" * 64,
                                request="V2 JSON, batch 1", seconds=2, repeats=2, runs=runs, summary=summary,
                                targets=check_targets(summary), gateway=GatewayCode(serving_module="serving/__init__.py",
                                python_path=None, repository="model_repository", inline_ms=None),
                                floor="the strict floor", machine=machine(), load_average=(0.1, 0.2, 0.3), git_revision="abc")
    (reports / "gateway").mkdir(parents=True)
    write(report, reports / "gateway")


def test_every_region_is_written_from_its_report_and_a_second_run_changes_nothing(repository, docs, tmp_path):
    reports = tmp_path / "build" / "reports"
    parity_report(repository, reports)
    matrix_markdown = matrix_report(reports)
    from crossdeploy.bench.report import write_report

    written = write_report(make_report(), reports / "bench" / "latest")
    gateway_report(reports)
    (docs / "bench").mkdir(exist_ok=True)
    (docs / "bench" / "stale.png").write_bytes(b"a chart of an older run")

    filled = write_docs(docs, reports)
    # make soak and make fuzz: rendered in test_soak.py; make remedies: the matrix's own renderer, as above
    long_runs = {"soak-report", "fuzz-report", "remedies-report", "remedies-figure"}
    assert {f.region for f in filled} == {"parity-table", "parity-figure", "matrix-report", "matrix-figure", "bench-report",
                                           "gateway-floor", "engines", "int8-curves", *long_runs}
    assert all(f.outcome.startswith("written from") for f in filled if f.region not in long_runs), filled
    parity = region(docs / "pathways.md", "parity-table")
    assert parity.startswith((reports / "parity" / "parity.md").read_text())  # the report's own Markdown, from its JSON
    assert "| `torch-onnx` | torch → torch.onnx (dynamo) |" in parity and "parity.json" in parity
    assert region(docs / "matrix.md", "matrix-report").startswith(matrix_markdown)
    assert "conversion failed (optional)" in matrix_markdown and "a note the report keeps" in matrix_markdown
    curves = region(docs / "int8.md", "int8-curves")
    assert "### int8 trade-off: tiny (pytorch) `torch-onnx-int8`" in curves and "| 1 | `node_Gemm` | 75.00% |" in curves
    assert "[curve](int8/tiny-torch-onnx-int8/keep_float.png)" in curves and "int8 trade-off" not in matrix_markdown
    copied = docs / "int8" / "tiny-torch-onnx-int8"
    assert (copied / "keep_float.png").read_bytes() == b"the sensitivity run's keep_float.png" and not (copied / "models").exists()
    bench = region(docs / "benchmarks.md", "bench-report")
    assert "### Verdict" in bench and "# Latency benchmark" not in bench
    charts = sorted(p.name for p in written.values() if p.suffix == ".png")
    assert sorted(p.name for p in (docs / "bench").glob("*.png")) == charts  # the stale chart is gone
    assert all(f"](bench/{png})" in bench for png in charts)
    assert region(docs / "gateway.md", "gateway-floor").startswith((reports / "gateway" / "gateway_floor.md").read_text())
    for png in ("parity.png", "matrix.png"):
        assert (docs / png).read_bytes() == next(reports.rglob(png)).read_bytes()
    prose = (docs / "pathways.md").read_text().split("<!-- generated")[0]
    assert prose == (DOCS / "pathways.md").read_text().split("<!-- generated")[0]  # hand-written text untouched

    before = snapshot(docs)
    write_docs(docs, reports)
    assert snapshot(docs) == before


def test_a_missing_report_names_its_command_and_never_erases_an_earlier_run(docs, tmp_path):
    reports = tmp_path / "reports"
    filled = write_docs(docs, reports)
    assert all(f.outcome.startswith("not measured yet") for f in filled)
    assert "`make bench` writes" in region(docs / "benchmarks.md", "bench-report")
    assert "`make bench-gateway` writes" in region(docs / "gateway.md", "gateway-floor")
    assert "`make matrix` writes" in region(docs / "matrix.md", "matrix-report")

    page = docs / "benchmarks.md"
    earlier = "A table an earlier `make docs` wrote.\n"
    page.write_text(page.read_text().replace(region(page, "bench-report"), earlier))
    (reports / "bench" / "latest").mkdir(parents=True)
    (reports / "bench" / "latest" / "results.json").write_text(json.dumps({"written by": "an older bench"}))
    outcome = {f.region: f.outcome for f in write_docs(docs, reports)}
    assert region(page, "bench-report") == earlier
    assert outcome["bench-report"].startswith("kept from an earlier run") and "does not read" in outcome["bench-report"]


def test_a_page_with_a_broken_region_is_refused_naming_the_page(docs, tmp_path):
    page = docs / "pathways.md"
    page.write_text(page.read_text() + "\n<!-- generated: parity-tabel -->\n<!-- /generated -->\n")
    with pytest.raises(ConfigError, match="pathways.md.*parity-tabel"):
        write_docs(docs, tmp_path)
    page.write_text(page.read_text().replace("<!-- generated: parity-tabel -->\n<!-- /generated -->\n", "<!-- generated: parity-table -->\n"))
    with pytest.raises(ConfigError, match="not closed"):
        write_docs(docs, tmp_path)


def test_make_docs_is_a_command_that_tolerates_missing_reports(docs, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "crossdeploy.cli", "docs", "--docs", str(docs), "--workdir", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "benchmarks.md [bench-report]: not measured yet" in proc.stdout

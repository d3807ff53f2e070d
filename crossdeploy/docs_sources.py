"""What each generated region of docs/ is written from: the report file, the command that makes it, and the
renderer. Each renderer is the report writer's own Markdown applied to the report as it was saved on disk, so a
page in docs/ shows exactly what that run's own report shows."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Callable

from pydantic import ValidationError

# A report written by an older version of its writer fails one of these; its region is then left as it was.
UNREADABLE = (OSError, KeyError, TypeError, ValueError, ValidationError)


@dataclass(frozen=True)
class Source:
    report: str  # relative to <workdir>/reports
    command: str  # the make target that writes it
    render: Callable[[Path, Path], str]  # (report file, docs folder) -> Markdown; may copy figures into docs/


def parity_table(report: Path, docs: Path) -> str:
    from crossdeploy.export.reports import markdown_from_json

    return markdown_from_json(json.loads(report.read_text()))


def copy_figure(report: Path, docs: Path, title: str) -> str:
    shutil.copyfile(report, docs / report.name)
    return f"![{title}]({report.name})\n"


def parity_figure(report: Path, docs: Path) -> str:
    return copy_figure(report, docs, "Distribution of absolute logit differences per variant")


def _matrix_run(report: Path):
    from crossdeploy.export.matrix_results import MatrixRun, PathwayResult, SpecRun

    saved = json.loads(report.read_text())
    result_fields = {f.name for f in fields(PathwayResult)}
    return MatrixRun(specs=[SpecRun(**spec) for spec in saved["specs"]],
                     results=[PathwayResult(**{k: v for k, v in r.items() if k in result_fields}) for r in saved["results"]],
                     created=saved["created"], timeout=saved["timeout_seconds"], registered=saved.get("registered", []))


def matrix_report(report: Path, docs: Path) -> str:
    from crossdeploy.export.matrix_report import markdown

    return markdown(_matrix_run(report), curves=False)


def int8_curves(report: Path, docs: Path) -> str:
    """The matrix's int8 keep-float tables; each curve's report folder (plots, ranking) copied to docs/int8/."""
    from crossdeploy.export.matrix_int8 import markdown_section

    run = _matrix_run(report)
    for row in [r for r in run.results if r.int8_curve and "plot" in r.int8_curve]:
        source = Path(row.int8_curve["plot"]).parent
        if not source.is_absolute():
            source = report.parent / source
        target = docs / "int8" / row.variant
        shutil.copytree(source, target, ignore=shutil.ignore_patterns("models", "*.json"), dirs_exist_ok=True)
        row.int8_curve = {**row.int8_curve, "plot": str(target / "keep_float.png"), "report": str(target / "sensitivity.md")}
    if not any(r.int8_curve for r in run.results):
        return "The last `make matrix` measured no int8 keep-float curve (`INT8_KEEP_FLOAT=N` asks for one).\n"
    return "\n".join(markdown_section(run.results, docs)) + "\n"


def matrix_figure(report: Path, docs: Path) -> str:
    return copy_figure(report, docs, "Deployability heatmap: every pathway × model")


def remedies_figure(report: Path, docs: Path) -> str:
    shutil.copyfile(report, docs / "remedies.png")  # docs/matrix.png is the built-in specs' heatmap
    return "![Deployability heatmap of the two recurrent models: the remedied pathways in blue](remedies.png)\n"


# The engines region's chart: kept with the comparison it belongs to when a later run compared no engines.
ENGINES_CHART = "engines.png"


def bench_report(report: Path, docs: Path) -> str:
    """The run's report.md without its title and charts, one heading level down; the charts go to docs/bench/."""
    from crossdeploy.bench.report import CHART_TITLES, markdown
    from crossdeploy.bench.results import BenchReport

    run = BenchReport.model_validate_json(report.read_text())
    body = _demoted(markdown(run, images=[])).splitlines()
    charts = sorted(report.parent.glob("*.png"))
    folder = docs / "bench"
    folder.mkdir(exist_ok=True)
    for stale in set(folder.glob("*.png")) - {folder / png.name for png in charts} - {folder / ENGINES_CHART}:
        stale.unlink()  # a chart this run has no data for must not survive from an older one
    for png in charts:
        shutil.copyfile(png, folder / png.name)
    images = [f"![{CHART_TITLES.get(png.name, png.stem)}](bench/{png.name})" for png in charts]
    return "\n".join(body).strip() + "\n" + ("\n" + "\n\n".join(images) + "\n" if images else "")


def engines_report(report: Path, docs: Path) -> str:
    """The bench run's Engines section, its chart copied to docs/bench/. A run that compared no engines (a quick
    or partial run measures one; a --url run or a report older than the engines, none) does not read here, so an
    earlier run's comparison is kept."""
    from crossdeploy.bench.engines_report import engines_section
    from crossdeploy.bench.results import BenchReport

    run = BenchReport.model_validate_json(report.read_text())
    if len(run.engines) < 2:
        measured = ", ".join(e.engine for e in run.engines) or "none"
        raise ValueError(f"the run compared no engines (measured: {measured}); `make bench` measures both")
    section = engines_section(run)
    chart = report.parent / ENGINES_CHART
    figure = ""
    if chart.is_file():
        (docs / "bench").mkdir(exist_ok=True)
        shutil.copyfile(chart, docs / "bench" / chart.name)
        figure = "\n![Throughput and p99 vs concurrency per engine](bench/engines.png)\n"
    return _demoted("\n".join(section)) + figure


def gateway_floor(report: Path, docs: Path) -> str:
    from crossdeploy.bench.floor_results import GatewayFloorReport
    from crossdeploy.bench.gateway_floor import markdown

    return markdown(GatewayFloorReport.model_validate_json(report.read_text()))


def _demoted(markdown: str) -> str:
    """A report's own Markdown inside a page: its title dropped, every other heading one level down."""
    lines = markdown.splitlines()
    return "\n".join(("#" + line) if line.startswith("## ") else line for line in lines if not line.startswith("# ")).strip() + "\n"


def soak_report(report: Path, docs: Path) -> str:
    """The soak's report.md, its plots copied to docs/soak/ (the per-second timeline stays in the report)."""
    from crossdeploy.bench.soak_report import markdown

    folder = docs / "soak"
    folder.mkdir(exist_ok=True)
    for png in sorted(report.parent.glob("*.png")):
        shutil.copyfile(png, folder / png.name)
    return _demoted(markdown(json.loads(report.read_text()))).replace("](", "](soak/")


def fuzz_report(report: Path, docs: Path) -> str:
    from crossdeploy.bench.fuzz_report import markdown

    return _demoted(markdown(json.loads(report.read_text())))


SOURCES: dict[str, Source] = {
    "parity-table": Source("parity/parity.json", "make pipeline", parity_table),
    "parity-figure": Source("parity/parity.png", "make pipeline", parity_figure),
    "matrix-report": Source("matrix/matrix.json", "make matrix", matrix_report),
    "matrix-figure": Source("matrix/matrix.png", "make matrix", matrix_figure),
    "int8-curves": Source("matrix/matrix.json", "make matrix", int8_curves),
    "remedies-report": Source("matrix-recurrent/matrix.json", "make remedies", matrix_report),
    "remedies-figure": Source("matrix-recurrent/matrix.png", "make remedies", remedies_figure),
    "bench-report": Source("bench/latest/results.json", "make bench", bench_report),
    "engines": Source("bench/latest/results.json", "make bench", engines_report),
    "gateway-floor": Source("gateway/gateway_floor.json", "make bench-gateway", gateway_floor),
    "soak-report": Source("soak/report.json", "make soak", soak_report),
    "fuzz-report": Source("fuzz/report.json", "make fuzz", fuzz_report),
}

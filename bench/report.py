"""The latency report written to disk: results.json (the BenchReport), results.schema.json (its JSON Schema, so any
run can be validated), report.md (the Markdown below) and the charts of bench/plots.py beside them.

The Markdown opens with the verdicts — a lead smaller than the noise is written "tie (within the noise)", never
a win — then the in-process and gateway tables, the engines side by side (bench/engines_report.py), the
cold-start table, how to read them, the notes and the charts.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from .engines_report import engines_section
from .markdown_fmt import MISSING, percent, sig, table, with_spread
from .plots import available_charts, write_plots
from .results import BenchReport, Scenario

TIE = "tie (within the noise)"
CHART_TITLES = {
    "latency_cdf.png": "In-process latency CDF per variant",
    "throughput_vs_concurrency.png": "Gateway throughput vs concurrency",
    "pathways.png": "In-process p50 per pathway",
    "breakdown.png": "Time breakdown per protocol",
    "engines.png": "Throughput and p99 vs concurrency per engine",
}


# ---- number formatting ----

def duration(seconds: float) -> str:
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min {secs} s" if minutes else f"{secs} s"


# ---- figures across the repeats ----

def median_of(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def spread_of(values: list[float]) -> tuple[float | None, float | None]:
    """Median and relative range (max - min) / median of a figure across the runs."""
    if not values:
        return None, None
    median = statistics.median(values)
    return median, (max(values) - min(values)) / median if median else None


def stability(scenario: Scenario) -> str:
    if scenario.stable:
        return "yes"
    unstable = sum(not run.stable for run in scenario.runs)
    return f"no — UNSTABLE ({unstable}/{len(scenario.runs)} runs)"


def load_point(scenario: Scenario) -> str:
    if scenario.mode == "closed":
        return f"C={scenario.concurrency}"
    if scenario.mode == "open" and scenario.rate is not None:
        return f"{scenario.rate:g} req/s offered"
    return MISSING


# ---- sections ----

def header(report: BenchReport) -> list[str]:
    m = report.machine
    return [
        "# Latency benchmark",
        "",
        f"- **Date:** {report.created:%Y-%m-%d %H:%M %Z}".rstrip(),
        f"- **Machine:** {m.platform}; {m.processor}; {m.cores} cores; {sig(m.memory_gb)} GB RAM; Python {m.python}",
        f"- **Git revision:** `{report.git_revision}`",
        f"- **Duration:** {duration(report.duration_s)}",
        f"- **Quick run:** {'yes — fewer repeats and shorter windows; indicative only' if report.quick else 'no'}",
        "- **Versions:** " + (", ".join(f"{k} {v}" for k, v in sorted(report.versions.items())) or MISSING),
    ]


def verdict_section(report: BenchReport) -> list[str]:
    lines = ["## Verdict", ""]
    if not report.verdicts:
        return lines + ["_No verdicts in this run._"]
    rows = []
    for v in report.verdicts:
        if v.runner_up is None:
            result = "only pathway measured"
        elif v.tie:
            result = TIE + (f" with {', '.join(v.tied_with)}" if v.tied_with else "")
        else:
            result = f"wins by {percent(v.margin)}"
        rows.append([v.group, v.winner, sig(v.winner_p50), v.runner_up or MISSING, sig(v.runner_up_p50),
                     percent(v.margin), result])
    header_row = ["Scenario group", "Fastest pathway", "p50 ms", "Runner-up", "p50 ms", "Margin", "Result"]
    return lines + table(header_row, rows)


def _section(report: BenchReport, kind: str, label: str, title: str, intro: str) -> tuple[list[str], list]:
    """A section's heading and its scenarios; under the heading of a run without any, a line that says so."""
    scenarios = [s for s in report.scenarios if s.kind == kind]
    empty = [] if scenarios else ["", f"_No {label} scenarios in this run._"]
    return [f"## {title}", "", intro, *empty], scenarios


def inprocess_section(report: BenchReport) -> list[str]:
    lines, scenarios = _section(report, "inprocess", "in-process", "In-process", "Per call, through the runtime adapter (`adapter`) "
                                "or the bare runtime (`bare`). Latency: median of the repeats ± their relative range.")
    if not scenarios:
        return lines
    rows = []
    for s in sorted(scenarios, key=lambda s: (s.batch, s.threads or 1, s.layer, s.p50.median)):
        p90, p90_rel = spread_of([run.latency.p90 for run in s.runs])
        cpu = median_of([run.cpu_ms_per_inference for run in s.runs if run.cpu_ms_per_inference is not None])
        rows.append([s.variant, s.layer, s.batch, s.threads or MISSING, with_spread(s.p50.median, s.p50.relative),
                     with_spread(p90, p90_rel) if p90 is not None else MISSING,
                     with_spread(s.p99.median, s.p99.relative), sig(s.throughput.median), sig(cpu), stability(s)])
    return lines + [""] + table(["Variant", "Layer", "Batch", "Threads", "p50 ms", "p90 ms", "p99 ms",
                                 "Samples/s", "CPU ms/inference", "Stable"], rows)


def gateway_section(report: BenchReport) -> list[str]:
    lines, scenarios = _section(report, "gateway", "gateway", "Through the gateway", "Per request, measured by the client. "
                                "Server columns: mean ms per request inside the server (median of the repeats).")
    if not scenarios:
        return lines
    rows = []
    for s in sorted(scenarios, key=lambda s: (s.mode != "closed", s.protocol, s.variant, s.engine or "", s.concurrency or 0,
                                            s.rate or 0)):
        server = [run.server_ms for run in s.runs if run.server_ms]
        parts = [sig(median_of([ms[p] for ms in server if p in ms])) for p in ("queue", "decode", "inference", "encode")]
        variant = s.variant if s.target == "crossdeploy" else f"{s.variant} @ {s.target}"
        if s.engine and s.engine != "inprocess":
            variant += f" on {s.engine}"
        rows.append([variant, s.protocol, s.mode or MISSING, load_point(s), with_spread(s.p50.median, s.p50.relative),
                     with_spread(s.p99.median, s.p99.relative), sig(median_of([r.requests_per_s for r in s.runs])),
                     *parts, sum(run.errors for run in s.runs), stability(s)])
    return lines + [""] + table(["Variant", "Protocol", "Mode", "C / rate", "p50 ms", "p99 ms", "Req/s", "Queue ms",
                                 "Decode ms", "Inference ms", "Encode ms", "Errors", "Stable"], rows)


def coldstart_section(report: BenchReport) -> list[str]:
    lines = ["## Cold start and footprint", ""]
    if not report.coldstart:
        return lines + ["_No cold-start measurements in this run._"]
    rows = [[c.variant, c.format, sig(c.load_s), sig(c.first_inference_ms), sig(c.artifact_bytes / 1024),
             sig(c.rss_added_mb)] for c in sorted(report.coldstart, key=lambda c: c.load_s)]
    return lines + table(["Variant", "Format", "Load s", "First inference ms", "Artifact KB", "RSS added MB"], rows)


def how_to_read(report: BenchReport) -> list[str]:
    repeats = report.settings.get("repeats") or max((len(s.runs) for s in report.scenarios), default=0)
    return ["## How to read this", "",
            f"Every scenario was run {repeats} times (repeats); each figure is the "
            "median of the repeats, and ±% is their spread, (max - min) / median. A difference smaller than the "
            "spread is a tie: such a verdict reads \"" + TIE + "\" and is not a win. A scenario is UNSTABLE when "
            "its per-window p50s did not settle before the cap; treat its figures as rough. The open loop sends "
            "at a fixed rate and measures each request from its intended send time, so coordinated omission is "
            "not hidden: a stall shows as the latency of every request queued behind it."]


def notes_section(report: BenchReport) -> list[str]:
    return ["## Notes", ""] + ([f"- {note}" for note in report.notes] or ["_None._"])


def charts_section(images: list[str]) -> list[str]:
    if not images:
        return []
    return ["## Charts", ""] + [f"![{CHART_TITLES.get(name, name)}]({name})\n" for name in images]


def markdown(report: BenchReport, images: list[str] | None = None) -> str:
    """The report as Markdown. `images`: PNG file names to link (default: the charts the report has data for)."""
    images = available_charts(report) if images is None else images
    sections = [header(report), verdict_section(report), inprocess_section(report), gateway_section(report),
                engines_section(report), coldstart_section(report), how_to_read(report), notes_section(report),
                charts_section(images)]
    return "\n\n".join("\n".join(section) for section in sections if section).rstrip() + "\n"


def write_report(report: BenchReport, folder: Path) -> dict[str, Path]:
    """Write results.json, results.schema.json, the charts and report.md into `folder`; return name -> path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"results.json": folder / "results.json", "results.schema.json": folder / "results.schema.json",
             "report.md": folder / "report.md"}
    paths["results.json"].write_text(report.model_dump_json(indent=2) + "\n")
    paths["results.schema.json"].write_text(json.dumps(BenchReport.model_json_schema(), indent=2) + "\n")
    pngs = write_plots(report, folder)
    paths["report.md"].write_text(markdown(report, images=[png.name for png in pngs]))
    return paths | {png.name: png for png in pngs}

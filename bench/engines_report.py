"""The "Engines" section of the latency report and the data of its chart (engines.png): the same closed-loop
scenario through each engine's gateway side by side (requests/s, p50, p99, and Ray's over the in-process
figure), the memory of each engine's processes, and each engine's cold start."""

from __future__ import annotations

import statistics

from .markdown_fmt import MISSING, sig, table
from .results import BenchReport, Scenario

REFERENCE = "inprocess"  # the engine the others are divided by
PREFERRED = ("torch-onnx", "v2-binary")  # the chart's pair, when measured: a fast model, so the engine's cost shows


def closed_by_engine(report: BenchReport) -> dict[tuple[str, str, int], dict[str, Scenario]]:
    """(variant, protocol, concurrency) -> engine -> its closed-loop scenario, for every point measured on more
    than one engine (or, in a run of one engine, on that one)."""
    points: dict[tuple[str, str, int], dict[str, Scenario]] = {}
    for s in report.scenarios:
        if s.kind == "gateway" and s.mode == "closed" and s.engine and s.concurrency is not None and s.runs:
            points.setdefault((s.variant, s.protocol, s.concurrency), {})[s.engine] = s
    engines = {e for by_engine in points.values() for e in by_engine}
    wanted = 2 if len(engines) > 1 else 1
    return {key: by_engine for key, by_engine in sorted(points.items()) if len(by_engine) >= wanted}


def requests_per_s(s: Scenario) -> float:
    return statistics.median(run.requests_per_s for run in s.runs)


def chart_pair(report: BenchReport) -> tuple[str, str] | None:
    """The (variant, protocol) engines.png draws: torch-onnx over V2 binary if measured, else the first."""
    pairs = sorted({(v, p) for v, p, _ in closed_by_engine(report)})
    return PREFERRED if PREFERRED in pairs else (pairs[0] if pairs else None)


def engines_data(report: BenchReport) -> tuple[tuple[str, str] | None, dict[str, list[tuple[int, float, float]]]]:
    """The chart's pair and, per engine, [(concurrency, requests/s, p99 ms)] in ascending concurrency."""
    pair = chart_pair(report)
    if pair is None or not report.engines:
        return None, {}
    lines: dict[str, list[tuple[int, float, float]]] = {}
    for (variant, protocol, concurrency), by_engine in closed_by_engine(report).items():
        if (variant, protocol) == pair:
            for engine, s in by_engine.items():
                lines.setdefault(engine, []).append((concurrency, requests_per_s(s), s.p99.median))
    return pair, {engine: sorted(points) for engine, points in sorted(lines.items())}


def ratio(value: float | None, reference: float | None) -> str:
    return f"{sig(value / reference, 2)}×" if value is not None and reference else MISSING


def comparison_table(report: BenchReport) -> list[str]:
    points = closed_by_engine(report)
    engines = [e.engine for e in report.engines]
    others = [e for e in engines if e != REFERENCE]
    header = ["Variant", "Protocol", "C"]
    header += [f"{e} req/s" for e in engines] + [f"{e} p50 ms" for e in engines] + [f"{e} p99 ms" for e in engines]
    if REFERENCE in engines:
        header += [f"{e}/{REFERENCE} req/s" for e in others] + [f"{e}/{REFERENCE} p99" for e in others]
    rows = []
    for (variant, protocol, concurrency), by_engine in points.items():
        rps = {e: requests_per_s(s) for e, s in by_engine.items()}
        p99 = {e: by_engine[e].p99.median for e in by_engine}
        row = [variant, protocol, concurrency, *(sig(rps.get(e)) for e in engines),
               *(sig(by_engine[e].p50.median) if e in by_engine else MISSING for e in engines), *(sig(p99.get(e)) for e in engines)]
        if REFERENCE in engines:
            row += [ratio(rps.get(e), rps.get(REFERENCE)) for e in others] + [ratio(p99.get(e), p99.get(REFERENCE)) for e in others]
        rows.append(row)
    return table(header, rows) if rows else ["_No closed-loop scenario was measured on these engines._"]


def memory_table(report: BenchReport) -> list[str]:
    rows = []
    for run in report.engines:
        for group in run.memory:
            what = group.name + (f" ({', '.join(group.members)})" if group.members else "")
            rows.append([run.engine, what, group.processes, sig(group.pss_mb), sig(group.rss_mb)])
        total_pss = None if any(g.pss_mb is None for g in run.memory) else sum(g.pss_mb for g in run.memory)
        rows.append([run.engine, "**all processes**", sum(g.processes for g in run.memory), sig(total_pss),
                     sig(sum(g.rss_mb for g in run.memory))])
    return table(["Engine", "Processes of", "Count", "PSS MB", "RSS MB"], rows)


def engines_section(report: BenchReport) -> list[str]:
    """Empty for a report without engine runs (a --url run, or one written before engines were measured)."""
    if not report.engines:
        return []
    names = ", ".join(f"`{e.engine}`" for e in report.engines)
    repeats = max((len(s.runs) for s in report.scenarios if s.engine), default=0)
    lines = ["## Engines", "",
             f"The same closed-loop sweep through each engine's gateway ({names}), started one at a time on one "
             f"machine ({report.machine.cores} cores, {report.created:%Y-%m-%d}), with the load generator on the same "
             f"cores. Figures are medians of {repeats} repeat{'s' if repeats != 1 else ''}; a ratio "
             "is the other engine's figure over the in-process one (req/s below 1× and p99 above 1× are its cost).",
             "", *comparison_table(report), "",
             "**Memory**, read after the sweep over the server's process tree. PSS (proportional set size) counts a page "
             "shared by n processes as 1/n in each, so a group's PSS is what it adds; RSS counts shared libraries in "
             "full in every process. On Ray: one line per deployment (its replicas), `driver` for the `crossdeploy "
             "serve` process that started the cluster, `ray` for Ray's own processes.", "", *memory_table(report), "",
             "**Cold start**: from launching `crossdeploy serve --engine E` to the first 200 of `/v2/health/ready` "
             "(on Ray: a cluster started, every deployment's replicas loaded, and a batch-1 inference per family).", ""]
    return lines + table(["Engine", "Cold start s"], [[e.engine, sig(e.cold_start_s)] for e in report.engines])

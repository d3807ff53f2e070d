"""The latency report's charts, drawn with matplotlib (Agg, no display) from a BenchReport into PNGs:

    latency_cdf.png                 in-process latency CDF per variant (batch 1, 1 thread, adapter layer)
    throughput_vs_concurrency.png   gateway closed loop: requests/s against concurrency, one panel per protocol
    pathways.png                    in-process p50 per pathway (batch 1, and batch 64 when measured), fastest first
    breakdown.png                   gateway closed loop: where a request's time goes, one stacked bar per protocol
    engines.png                     one variant and protocol through each engine's gateway: requests/s and p99
                                    against concurrency, one line per engine (bench/engines_report.py)

A chart whose data the report does not hold is skipped; `write_plots` returns only the files it wrote.
"""

from __future__ import annotations

import statistics
from collections import Counter
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.ticker import FuncFormatter, ScalarFormatter  # noqa: E402

from .engines_report import engines_data  # noqa: E402
from .results import BenchReport, Scenario  # noqa: E402

DPI = 110
FRAMEWORK_COLOURS = {"PyTorch": "tab:red", "Keras": "tab:blue", "other": "tab:grey"}
SERVER_PARTS = ("queue", "decode", "inference", "encode")
SEGMENT_COLOURS = {"queue": "tab:purple", "decode": "tab:orange", "inference": "tab:green", "encode": "tab:cyan",
                   "client-side rest": "lightgrey"}


def framework(variant: str) -> str:
    return "PyTorch" if variant.startswith("torch-") else "Keras" if variant.startswith("keras-") else "other"


def line_label(scenario: Scenario) -> str:
    """The variant, plus whatever else tells two lines of one panel apart (a batch other than 1, another server)."""
    label = scenario.variant
    if scenario.batch != 1:
        label += f" (batch {scenario.batch})"
    if scenario.target != "crossdeploy":
        label += f" @ {scenario.target}"
    if scenario.engine and scenario.engine != "inprocess":
        label += f" on {scenario.engine}"
    return label


def requests_per_s(scenario: Scenario) -> tuple[float, float, float]:
    """Median, min and max requests/s across the repeats (from the throughput spread when no run is kept)."""
    values = [run.requests_per_s for run in scenario.runs]
    if not values:
        spread, batch = scenario.throughput, max(scenario.batch, 1)
        return spread.median / batch, spread.min / batch, spread.max / batch
    return statistics.median(values), min(values), max(values)


def first_per_variant(scenarios: list[Scenario]) -> list[Scenario]:
    seen: dict[str, Scenario] = {}
    for scenario in scenarios:
        seen.setdefault(scenario.variant, scenario)
    return list(seen.values())


# ---- data selection: one function per chart, so the report can tell which charts exist ----

def cdf_scenarios(report: BenchReport) -> tuple[list[Scenario], bool]:
    """The batch-1 in-process scenarios the CDF draws (one per variant), and whether they are the preferred ones:
    the adapter layer at 1 thread when measured, otherwise any at batch 1 (adapter first, fewest threads)."""
    batch1 = [s for s in report.scenarios if s.kind == "inprocess" and s.batch == 1]
    preferred = [s for s in batch1 if s.layer == "adapter" and (s.threads or 1) == 1]
    chosen = preferred or sorted(batch1, key=lambda s: (s.layer != "adapter", s.threads or 1))
    return first_per_variant(chosen), bool(preferred)


def cdf_data(report: BenchReport) -> list[tuple[str, list[tuple[float, float]]]]:
    """(variant, cdf points) from the first run with a CDF of each scenario of `cdf_scenarios`."""
    lines = []
    for scenario in cdf_scenarios(report)[0]:
        points = next((run.cdf for run in scenario.runs if run.cdf), [])
        points = [(ms, fraction) for ms, fraction in points if ms > 0]  # a log axis has no zero
        if points:
            lines.append((scenario.variant, sorted(points)))
    return lines


def throughput_data(report: BenchReport) -> dict[str, dict[str, list[tuple[int, float, float, float]]]]:
    """protocol -> line label -> [(concurrency, median, min, max requests/s)], concurrency ascending."""
    panels: dict[str, dict[str, list[tuple[int, float, float, float]]]] = {}
    for s in report.scenarios:
        if s.kind == "gateway" and s.mode == "closed" and s.concurrency is not None and s.runs:
            panels.setdefault(s.protocol, {}).setdefault(line_label(s), []).append((s.concurrency, *requests_per_s(s)))
    return {protocol: {label: sorted(points) for label, points in sorted(lines.items())}
            for protocol, lines in sorted(panels.items())}


def pathway_data(report: BenchReport, batch: int) -> list[tuple[str, float, float, float]]:
    """(variant, p50 median, min, max) of the in-process adapter scenarios at this batch and 1 thread, fastest first."""
    chosen = [s for s in report.scenarios
              if s.kind == "inprocess" and s.layer == "adapter" and s.batch == batch and (s.threads or 1) == 1]
    rows = [(s.variant, s.p50.median, s.p50.min, s.p50.max) for s in first_per_variant(chosen)]
    return sorted(rows, key=lambda row: row[1])


def representative_variant(scenarios: list[Scenario]) -> str | None:
    """The variant in most of these scenarios (the alphabetically first on a tie)."""
    counts = Counter(s.variant for s in scenarios)
    return min(counts, key=lambda v: (-counts[v], v)) if counts else None


def breakdown_data(report: BenchReport) -> tuple[str | None, list[tuple[str, dict[str, float]]]]:
    """(representative variant, [(bar label, {segment: ms})]): per protocol, the representative variant's
    closed-loop scenario at its lowest concurrency (the protocol's own most common variant where the
    representative is not served). Server parts are medians across the runs; "client-side rest" is the client
    p50 minus the server sum, clamped at 0."""
    with_server = [s for s in report.scenarios if s.kind == "gateway" and s.mode == "closed"
                   and any(run.server_ms for run in s.runs)]
    # one engine's bars: Ray's replicas report a hop between processes as queue, which would read as another protocol
    one_engine = [s for s in with_server if s.engine in (None, "inprocess")]
    with_server = one_engine or with_server
    representative = representative_variant(with_server)
    bars = []
    for protocol in sorted({s.protocol for s in with_server}):
        candidates = [s for s in with_server if s.protocol == protocol]
        variant = representative if any(s.variant == representative for s in candidates) \
            else representative_variant(candidates)
        scenario = min((s for s in candidates if s.variant == variant), key=lambda s: (s.concurrency or 0, s.batch))
        server = [run.server_ms for run in scenario.runs if run.server_ms]
        parts = {part: statistics.median(ms.get(part, 0.0) for ms in server) for part in SERVER_PARTS}
        server_total = statistics.median(sum(ms.values()) for ms in server)  # parts outside the four count too
        parts["client-side rest"] = max(0.0, scenario.p50.median - server_total)
        bars.append((f"{protocol}\n{variant}, C={scenario.concurrency}", parts))
    return representative, bars


def available_charts(report: BenchReport) -> list[str]:
    """The PNG file names `write_plots` would write for this report, in order."""
    present = {
        "latency_cdf.png": bool(cdf_data(report)),
        "throughput_vs_concurrency.png": bool(throughput_data(report)),
        "pathways.png": bool(pathway_data(report, 1) or pathway_data(report, 64)),
        "breakdown.png": bool(breakdown_data(report)[1]),
        "engines.png": bool(engines_data(report)[1]),
    }
    return [name for name, ok in present.items() if ok]


# ---- drawing ----

def plain_log_ticks(ax) -> None:
    """Label a log x axis 0.05, 0.1, 0.2 … rather than 5×10⁻²: majors, and minors at 2× and 5×."""
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}" if f"{v:.0e}"[0] in "25" else ""))
    ax.tick_params(axis="x", which="minor", labelsize=7)


def save(fig, path: Path) -> Path:
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_cdf(report: BenchReport, path: Path) -> Path:
    lines = cdf_data(report)
    fig, ax = plt.subplots(figsize=(9, 5.5))
    colours = plt.get_cmap("tab20" if len(lines) > 10 else "tab10").colors
    for i, (variant, points) in enumerate(lines):
        ax.plot([ms for ms, _ in points], [f for _, f in points], label=variant, lw=1.3, color=colours[i % len(colours)],
                ls="-" if framework(variant) == "PyTorch" else "--")
    ax.set_xscale("log")
    plain_log_ticks(ax)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("latency per call (ms, log scale)")
    ax.set_ylabel("fraction of calls ≤ latency")
    which = "adapter, batch 1, 1 thread" if cdf_scenarios(report)[1] else "batch 1; no adapter run at 1 thread"
    ax.set_title(f"In-process latency CDF per variant ({which}; ms)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return save(fig, path)


def plot_throughput(report: BenchReport, path: Path) -> Path:
    panels = throughput_data(report)
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels) + 1.5, 4.6), squeeze=False)
    for ax, (protocol, lines) in zip(axes[0], panels.items()):
        for label, points in lines.items():
            xs = [c for c, *_ in points]
            medians = [m for _, m, _, _ in points]
            errors = [[m - lo for _, m, lo, _ in points], [hi - m for _, m, _, hi in points]]
            ax.errorbar(xs, medians, yerr=errors, marker="o", ms=4, capsize=3, lw=1.2, label=label)
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted({c for points in lines.values() for c, *_ in points}))
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.set_title(protocol)
        ax.set_xlabel("concurrency (connections in flight)")
        ax.set_ylabel("requests/s (median, bars = min..max)")
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, frameon=False)
    fig.suptitle("Gateway closed loop: throughput vs concurrency (requests/s)")
    return save(fig, path)


def plot_pathways(report: BenchReport, path: Path) -> Path:
    panels = [(batch, rows) for batch in (1, 64) if (rows := pathway_data(report, batch))]
    height = max(3.0, 0.32 * max(len(rows) for _, rows in panels) + 1.5)
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), height), squeeze=False, layout="constrained")
    for ax, (batch, rows) in zip(axes[0], panels):
        names = [variant for variant, *_ in rows]
        medians = [m for _, m, _, _ in rows]
        errors = [[m - lo for _, m, lo, _ in rows], [hi - m for _, m, _, hi in rows]]
        colours = [FRAMEWORK_COLOURS[framework(v)] for v in names]
        ax.barh(names, medians, xerr=errors, color=colours, capsize=3, error_kw={"lw": 1})
        ax.invert_yaxis()  # fastest on top
        if max(medians) / max(min(medians), 1e-9) > 30:
            ax.set_xscale("log")
            plain_log_ticks(ax)
        ax.set_xlabel("p50 latency per call (ms; median of repeats, bars = min..max)")
        ax.set_title(f"batch {batch}, 1 thread")
        ax.grid(True, axis="x", which="both", alpha=0.3)
    used = sorted({framework(v) for _, rows in panels for v, *_ in rows})
    axes[0][-1].legend(handles=[Patch(color=FRAMEWORK_COLOURS[f], label=f) for f in used], fontsize=8,
                       loc="upper right")  # the fastest (shortest) bar is on top
    fig.suptitle("In-process p50 per pathway (ms), fastest first")
    return save(fig, path)


def plot_breakdown(report: BenchReport, path: Path) -> Path:
    representative, bars = breakdown_data(report)
    fig, ax = plt.subplots(figsize=(max(5.0, 1.6 * len(bars) + 2.5), 5))
    labels = [label for label, _ in bars]
    bottoms = [0.0] * len(bars)
    for segment, colour in SEGMENT_COLOURS.items():
        heights = [parts[segment] for _, parts in bars]
        ax.bar(labels, heights, bottom=bottoms, color=colour, label=segment, width=0.6)
        bottoms = [b + h for b, h in zip(bottoms, heights)]
    ax.set_ylabel("ms per request (server parts: mean; total: client p50)")
    ax.set_title(f"Time per request by protocol (ms) — {representative} at its lowest concurrency\n"
                 "(another variant only where a protocol does not serve it)", fontsize=10)
    ax.tick_params(axis="x", labelsize=8)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return save(fig, path)


def plot_engines(report: BenchReport, path: Path) -> Path:
    (variant, protocol), lines = engines_data(report)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.6))
    for engine, points in lines.items():
        xs = [c for c, _, _ in points]
        left.plot(xs, [rps for _, rps, _ in points], marker="o", ms=4, lw=1.4, label=engine)
        right.plot(xs, [p99 for _, _, p99 in points], marker="o", ms=4, lw=1.4, label=engine)
    for ax, what in ((left, "requests/s (median of repeats)"), (right, "p99 latency, ms (median of repeats)")):
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted({c for points in lines.values() for c, _, _ in points}))
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.set_xlabel("concurrency (connections in flight)")
        values = [v for line in ax.get_lines() for v in line.get_ydata() if v > 0]
        if values and max(values) / min(values) > 20:  # engines apart by orders of magnitude: both lines readable
            ax.set_yscale("log")
            ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            what += ", log scale"
        else:
            ax.set_ylim(bottom=0)
        ax.set_ylabel(what)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8, frameon=False)
    left.set_title("throughput")
    right.set_title("p99 latency")
    fig.suptitle(f"The gateway on each engine: {variant}, {protocol}, batch 1, closed loop")
    return save(fig, path)


PLOTTERS = {"latency_cdf.png": plot_cdf, "throughput_vs_concurrency.png": plot_throughput,
            "pathways.png": plot_pathways, "breakdown.png": plot_breakdown, "engines.png": plot_engines}


def write_plots(report: BenchReport, folder: Path) -> list[Path]:
    """Draw every chart the report has data for into `folder`; return the paths written."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return [PLOTTERS[name](report, folder / name) for name in available_charts(report)]

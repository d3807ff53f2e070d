"""The soak's report: report.json (everything, the per-second timeline included), report.md (the phases and the
checks) and three PNGs over time — answers by kind, p50/p99 of the served ones, the gateway's RSS — with the
overload phases shaded."""

from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)

DPI = 110
KIND_COLOURS = {"ok": "tab:green", "503": "tab:orange"}


def _ms(value: float | None) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:,.0f}"


def markdown(report: dict) -> str:
    lines = [f"# Soak: {report['minutes']:g} minutes, {report['requests']:,} requests", "",
             f"`{report['command']}` at {report['commit']}, finished {report['finished']}. Capacity of the mix "
             f"({len(report['mix'])} requests: every ready variant in every protocol): **{report['capacity_per_s']:,.0f} "
             f"answers/s**; overload: {report['factor']:g}× that, open loop, plus 32 clients that resend at once when refused.", "",
             "| # | phase | s | offered open-loop/s | served/s | share of capacity | of the phase before | p50 ms | p99 ms | refused | recovery s |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for f in report["phases"]:
        recovery = f.get("recovery_s", "")
        before = f.get("share_of_phase_before")
        lines.append(f"| {f['index']} | {f['name']} | {f['seconds']:.0f} | {f['open_loop_rate']:,.0f} | {f['goodput_per_s']:,.0f} | "
                     f"{f['share_of_capacity']:.0%} | {'' if before is None else f'{before:.0%}'} | {_ms(f['p50_ms'])} | "
                     f"{_ms(f['p99_ms'])} | {f['refused_share']:.1%} | "
                     f"{'never' if recovery is None else recovery} |")
    lines += ["", "*Share of capacity*: served ÷ the calibrated capacity (16 closed-loop clients); *of the phase before*: "
              "served ÷ what the capacity phase just before served under its mixed open- and closed-loop load.",
              "", "Answers by kind: " + ", ".join(f"{k}: {v:,}" for k, v in sorted(report["kinds"].items())) + ".", ""]
    rss, drift = report["rss"], report["p99_drift"]
    if rss["growth"] is not None:
        lines.append(f"RSS: {rss['first_mb']:.0f} MB at the first second, {rss['warm_mb']:.0f} MB after the first phase, "
                     f"{rss['last_mb']:.0f} MB at the end ({rss['growth']:+.1%}).")
    if drift:
        lines.append(f"p99 at capacity: {_ms(drift['first_ms'])} ms in the first phase, {_ms(drift['last_ms'])} ms in the last.")
    lines += ["", "| check | value | |", "|---|---|---|"]
    lines += [f"| {c['name']} | {c['value']} | {'met' if c['met'] else '**NOT MET**'} |" for c in report["checks"]]
    lines += ["", "![answers](answers.png)", "![latency](latency.png)", "![rss](rss.png)", ""]
    return "\n".join(lines)


def _shade(ax, report: dict) -> None:
    for f, start in _starts(report):
        if f["name"] == "overload":
            ax.axvspan(start, start + f["seconds"], color="tab:red", alpha=0.08, lw=0)


def _starts(report: dict):
    start = 0.0
    seconds = {r["phase"]: r["second"] for r in reversed(report["timeline"])}  # first second of each phase
    for f in report["phases"]:
        start = seconds.get(f["index"], start)
        yield f, start


def _figure(title: str, ylabel: str):
    fig, ax = plt.subplots(figsize=(10, 3.6), dpi=DPI)
    ax.set_title(title, loc="left", fontsize=10)
    ax.set_xlabel("second of the soak")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    return fig, ax


def plots(report: dict, out: Path) -> list[Path]:
    rows = report["timeline"]
    seconds = [r["second"] for r in rows]
    written = []
    fig, ax = _figure("answers per second by kind (overload shaded)", "answers/s")
    kinds = sorted({k for r in rows for k in r["kinds"]}, key=lambda k: (k != "ok", k))
    for kind in kinds:
        ax.plot(seconds, [r["kinds"].get(kind, 0) for r in rows], lw=1, label=kind, color=KIND_COLOURS.get(kind))
    ax.axhline(report["capacity_per_s"], ls="--", lw=1, color="grey", label="capacity")
    _shade(ax, report)
    ax.legend(fontsize=8, loc="upper right")
    written.append(_save(fig, out / "answers.png"))
    fig, ax = _figure("latency of served answers, per second (overload shaded)", "ms")
    ax.set_yscale("log")
    for key, colour in (("p50_ms", "tab:blue"), ("p99_ms", "tab:purple")):
        ax.plot(seconds, [float("nan") if r[key] is None else r[key] for r in rows], lw=1, label=key[:3], color=colour)
    _shade(ax, report)
    ax.legend(fontsize=8, loc="upper right")
    written.append(_save(fig, out / "latency.png"))
    rss = [(r["second"], r["rss_mb"]) for r in rows if r.get("rss_mb")]
    if rss:
        fig, ax = _figure("gateway resident memory (overload shaded)", "MB")
        ax.plot(*zip(*rss), lw=1, color="tab:brown")
        _shade(ax, report)
        written.append(_save(fig, out / "rss.png"))
    return written


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def write(report: dict, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=1, allow_nan=False) + "\n")
    (out / "report.md").write_text(markdown(report))
    return [out / "report.json", out / "report.md", *plots(report, out)]

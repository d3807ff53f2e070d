"""diverge.json, diverge.md and diverge.png for one variant's chain."""

from __future__ import annotations

import json
from pathlib import Path

from .diverge_align import Hop

FLOOR = 1e-6  # exact agreement has no place on a log axis: it is drawn here, and said so in the title
CEILING = 1e12  # where a non-finite error (NaN, inf) is drawn


def _drawn(ratio: float | None) -> float:
    return CEILING if ratio is None else max(ratio, FLOOR)


def verdict(hop: Hop) -> str:
    if hop.first_divergence is None:
        return hop.status + (f": {hop.reason}" if hop.reason else "")
    p = hop.points[hop.first_divergence]
    return (f"first divergence: {hop.name} at {p.module} -> {p.node} ({p.op_type}), max abs {_g(p.max_abs)}, "
            f"{p.breaches}/{p.size} elements beyond tolerance")


def _g(value: float | None) -> str:
    return "non-finite" if value is None else f"{value:.3g}"


def _inputs(inputs: list[dict]) -> str:
    parts = []
    for i in inputs:
        error = f", max abs {_g(i['max_abs'])}" if "max_abs" in i else ""
        parts.append(f"`{i['name']}`: {i['is']}{error}")
    return "; ".join(parts)


def markdown(report: dict, hops: list[Hop]) -> str:
    lines = [f"# Where {report['variant']} leaves the tolerance", "",
             f"Chain: {' -> '.join(report['chain'])}. Samples: {report['samples']} ({report['model']}). "
             f"Tolerance: {report['tolerance']}.", "", "![error vs depth](diverge.png)", ""]
    for hop in hops:
        lines += [f"## {hop.name}: {hop.status}", "", verdict(hop), ""]
        if hop.first_divergence is not None:
            p = hop.points[hop.first_divergence]
            lines += [f"Its inputs: {_inputs(p.inputs)}.", ""]
        if hop.points:
            lines += [f"| depth | {hop.labels[0]} (type) | {hop.labels[1]} (op) | shape | max abs | max rel | err/tol | matched by |",
                      "|---:|---|---|---|---:|---:|---:|---|"]
            for p in hop.points:
                mark = " **first**" if p.depth == hop.first_divergence else ""
                lines.append(f"| {p.depth} | {p.module} ({p.module_type}) | {p.node} ({p.op_type}){mark} | {p.shape} "
                             f"| {_g(p.max_abs)} | {_g(p.max_rel)} | {_g(p.tolerance_ratio)} | {p.matched_by} |")
            lines.append("")
        if hop.unmatched:
            lines += ["Not matched:", ""] + [f"- {u['module']} ({u['type']}): {u['reason']}" for u in hop.unmatched] + [""]
    return "\n".join(lines)


def plot(variant: str, hops: list[Hop], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    drawn = [h for h in hops if h.points]
    fig, axes = plt.subplots(len(drawn) or 1, 1, figsize=(9, 3.6 * max(len(drawn), 1)), squeeze=False)
    for ax, hop in zip(axes[:, 0], drawn):
        depth = [p.depth for p in hop.points]
        ratio = [_drawn(p.tolerance_ratio) for p in hop.points]
        own = any(p.atol is not None for p in hop.points)  # int8 tensors: bounds in quantization steps
        ax.semilogy(depth, ratio, "o-", label="max |a-b| / " + ("its tensor's bound" if own else "(atol + rtol*|ref|)"))
        ax.axhline(1.0, color="tab:orange", linestyle="--", label="tolerance")
        if hop.first_divergence is not None:
            p = hop.points[hop.first_divergence]
            ax.plot([p.depth], [_drawn(p.tolerance_ratio)], "x", color="red", markersize=12, mew=3,
                    label=f"first divergence: {p.module} -> {p.node} ({p.op_type})")
        ax.set_xticks(depth, [f"{p.module}\n{p.op_type}" for p in hop.points], fontsize=7, rotation=45, ha="right")
        ax.set_ylabel("error / tolerance (log)")
        ax.set_title(f"{variant}: {hop.name} ({hop.status}); exact agreement drawn at {FLOOR:g}", fontsize=9)
        ax.legend(fontsize=7, loc="best")
    if not drawn:
        axes[0, 0].text(0.5, 0.5, "no hop could be matched", ha="center", va="center")
        axes[0, 0].set_axis_off()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(folder: Path, report: dict, hops: list[Hop]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    report = {**report, "hops": [h.as_dict() for h in hops], "verdicts": [verdict(h) for h in hops]}
    (folder / "diverge.json").write_text(json.dumps(report, indent=2, allow_nan=False) + "\n")
    (folder / "diverge.md").write_text(markdown(report, hops) + "\n")
    plot(report["variant"], hops, folder / "diverge.png")
    return folder

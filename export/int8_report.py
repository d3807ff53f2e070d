"""The int8 sensitivity report: sensitivity.json, sensitivity.md, sensitivity.png (per-layer error, ranked) and
keep_float.png (accuracy/agreement and size against the number of nodes kept in float)."""

from __future__ import annotations

import json
from pathlib import Path

from .int8_sensitivity import Sensitivity


KEPT_SHOWN = 6  # names listed per curve row in the Markdown; the JSON lists every one


def short(node: str) -> str:
    """TFLite names a fused node by every op folded into it, joined by ';': the last is the layer's own op."""
    return node.rsplit(";", 1)[-1]


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.2%}"


def markdown(result: Sensitivity) -> str:
    lines = [
        f"# int8 sensitivity: {result.variant}",
        "",
        f"Model `{result.model}`; float reference `{result.float_variant}` (accuracy {_pct(result.float_accuracy)}, "
        f"{result.float_size:,} bytes); {result.samples} parity samples; {result.calibration} calibration inputs.",
        f"Shipped `{result.variant}`: accuracy {_pct(result.shipped.accuracy)}, agreement with float "
        f"{_pct(result.shipped.agreement)}, max abs {result.shipped.max_abs:.4g}, {result.shipped.size:,} bytes. "
        f"Re-quantized here with nothing kept float, it differs from the shipped file by at most "
        f"{result.requantized_vs_shipped_max_abs:.3g}.",
        "",
        "## Each node quantized alone (every other node float), most sensitive first",
        "",
        "| rank | node | op | max abs | mean abs | agreement | accuracy |",
        "|---:|---|---|---:|---:|---:|---:|",
    ]
    for rank, layer in enumerate((layer for layer in result.layers if layer.quantized), 1):
        m = layer.measure
        lines.append(f"| {rank} | `{short(layer.node)}` | {layer.op_type} | {m.max_abs:.4g} | {m.mean_abs:.4g} | "
                     f"{_pct(m.agreement)} | {_pct(m.accuracy)} |")
    alone = [f"`{short(layer.node)}` ({layer.op_type})" for layer in result.layers if not layer.quantized]
    if alone:
        lines += ["", f"{len(alone)} node(s) take no Q/DQ when quantized alone (the quantizer quantizes them only "
                      f"next to a quantized neighbour), so they change nothing alone: {', '.join(alone)}."]
    lines += [
        "",
        "## Keeping the N most sensitive nodes in float",
        "",
        "| N | kept float | accuracy | agreement | max abs | mean abs | size (bytes) |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for point in result.curve:
        m = point.measure
        kept = ", ".join(f"`{short(n)}`" for n in point.kept[:KEPT_SHOWN]) or "–"
        if len(point.kept) > KEPT_SHOWN:
            kept += f" … (+{len(point.kept) - KEPT_SHOWN}, in sensitivity.json)"
        lines.append(f"| {point.keep_float} | {kept} | {_pct(m.accuracy)} | {_pct(m.agreement)} | {m.max_abs:.4g} | "
                     f"{m.mean_abs:.4g} | {m.size:,} |")
    lines += ["", "![per-layer error](sensitivity.png)", "", "![keep float](keep_float.png)", ""]
    return "\n".join(lines)


def _plots():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_layers(result: Sensitivity, path: Path) -> None:
    plt = _plots()
    layers = [layer for layer in result.layers if layer.quantized]
    names = [f"{short(layer.node)} ({layer.op_type})" for layer in layers]
    fig, ax = plt.subplots(figsize=(8, 0.3 * len(names) + 1.8))
    rows = range(len(names))
    ax.barh(rows, [layer.measure.max_abs for layer in layers], color="#f4a582", label="max abs")
    ax.barh(rows, [layer.measure.mean_abs for layer in layers], color="#b2182b", label="mean abs")
    ax.set_yticks(list(rows), names)
    ax.invert_yaxis()  # most sensitive on top
    ax.set_xlabel("logit error against the float model, that node alone quantized")
    hidden = len(result.layers) - len(layers)
    ax.set_title(f"{result.variant}\nint8 error per node, quantized alone ({result.samples} samples)"
                 + (f"\n{hidden} node(s) without Q/DQ alone not shown" if hidden else ""), fontsize="medium")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_curve(result: Sensitivity, path: Path) -> None:
    plt = _plots()
    # One evenly spaced tick per point: the counts run from 0 to all nodes and would crowd at the low end.
    counts = list(range(len(result.curve)))
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(counts, [p.measure.agreement * 100 for p in result.curve], "o-", label="agreement with float (%)")
    if result.float_accuracy is not None:
        ax.plot(counts, [p.measure.accuracy * 100 for p in result.curve], "s-", label="accuracy (%)")
        ax.axhline(result.float_accuracy * 100, color="grey", linestyle=":", label="float accuracy (%)")
    ax.set_xticks(counts, [str(p.keep_float) for p in result.curve])
    ax.set_xlabel("most sensitive nodes kept in float (N)")
    ax.set_ylabel("%")
    size = ax.twinx()
    size.plot(counts, [p.measure.size / 1024 for p in result.curve], "^--", color="#4d4d4d", label="size (KiB)")
    size.set_ylabel("model file (KiB)")
    lines = ax.get_legend_handles_labels()
    more = size.get_legend_handles_labels()
    ax.legend(lines[0] + more[0], lines[1] + more[1], loc="lower right", fontsize="small")
    ax.set_title(f"{result.variant}: keeping the most sensitive nodes in float", fontsize="medium")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(result: Sensitivity, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    (out / "sensitivity.json").write_text(json.dumps(result.to_dict(), indent=2) + "\n")
    (out / "sensitivity.md").write_text(markdown(result))
    plot_layers(result, out / "sensitivity.png")
    plot_curve(result, out / "keep_float.png")
    return out

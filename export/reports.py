"""The parity report in four shapes: a rich table, JSON, Markdown (rendered from the JSON, as docs/ is) and a PNG."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from crossdeploy.repository import FLOAT_TOLERANCE, INT8_TOLERANCE

from .parity import ParityRun, VariantParity


def chain(v: VariantParity) -> str:
    return " → ".join(step.tool for step in v.config.toolchain)


def _size(v: VariantParity) -> int:
    record = next(r for r in v.config.versions if r.version == v.version)
    return sum(f.size for f in record.files)


def _kb(size: int) -> str:
    return f"{size / 1024:,.0f} KB" if size < 10 * 1024**2 else f"{size / 1024**2:,.1f} MB"


def _row(v: VariantParity) -> dict:
    r = v.result
    o = r.outputs[0] if r.outputs else None
    return {
        "variant": v.config.name, "version": v.version, "source": v.config.source_framework,
        "precision": v.config.precision, "pathway": chain(v), "runtime": f"{v.config.runtime.tool} {v.config.runtime.version}",
        "support": v.config.support.status, "support_note": v.config.support.note, "size_bytes": _size(v),
        "dynamic_batch": v.config.dynamic_batch, "max_batch": v.config.max_batch, "batch_note": v.config.batch_note,
        "max_abs": o.max_abs if o else None, "mean_abs": o.mean_abs if o else None,
        "p99_abs": o.p99_abs if o else None, "max_rel": o.max_rel if o else None,
        "min_atol": o.min_atol if o else None, "min_rtol": o.min_rtol if o else None,
        "agreement": r.agreement, "accuracy": r.accuracy, "reference": r.reference,
        "tolerance": r.tolerance.model_dump(), "passed": r.passed, "failures": r.failures,
    }


def _g(value: float | None) -> str:
    if value is None:
        return "—"
    return "0" if value == 0 else f"{value:.1e}"


def _verdict(v: VariantParity) -> str:
    if v.config.name == v.result.reference:
        return "reference"
    return "pass" if v.result.passed else "FAIL"


def print_table(run: ParityRun, console: Console | None = None) -> None:
    table = Table(title=f"Parity on the test split ({run.samples} samples), each variant vs its own eager reference")
    for column in ("variant", "pathway", "support", "size", "max abs", "min atol", "min rtol", "agree", "acc", "parity"):
        table.add_column(column, justify="right" if column in ("size", "max abs", "min atol", "min rtol", "agree", "acc") else "left")
    for v in run.variants:
        row = _row(v)
        verdict = _verdict(v)
        style = {"pass": "green", "reference": "cyan", "FAIL": "bold red"}[verdict]
        table.add_row(
            row["variant"], row["pathway"], row["support"], _kb(row["size_bytes"]), _g(row["max_abs"]),
            _g(row["min_atol"]), _g(row["min_rtol"]), f"{row['agreement']:.2%}" if row["agreement"] is not None else "—",
            f"{row['accuracy']:.2%}" if row["accuracy"] is not None else "—", f"[{style}]{verdict}[/]",
        )
    console = console or Console()
    console.print(table)
    if run.cross_framework_agreement is not None:
        console.print(f"PyTorch vs Keras (different weights): argmax agreement {run.cross_framework_agreement:.2%}")
    for failure in run.failures:
        console.print(f"[bold red]✗ {failure}")


def markdown(run: ParityRun) -> str:
    return markdown_from_json(to_json(run))


def markdown_from_json(report: dict) -> str:
    """The table from parity.json, so `make docs` renders a past run exactly as its parity.md."""
    lines = [
        f"Parity on the {report['samples']}-sample test split; each variant against its own source's eager reference. "
        f"Float variants by default: {FLOAT_TOLERANCE.describe()}, on every output value; int8: "
        f"{INT8_TOLERANCE.describe()}. *min atol* / *min rtol*: the smallest tolerance that would have "
        "passed (at rtol = 0 / atol = 0).",
        "",
        "| variant | pathway | runtime | support | size | max abs diff | min atol | min rtol | argmax agreement | accuracy | parity |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in report["variants"]:
        acc = f"{r['accuracy']:.2%}" if r["accuracy"] is not None else "—"
        verdict = "reference" if r["variant"] == r["reference"] else ("pass" if r["passed"] else "FAIL")
        lines.append(
            f"| `{r['variant']}` | {r['pathway']} | {r['runtime']} | {r['support']} | {_kb(r['size_bytes'])} | "
            f"{_g(r['max_abs'])} | {_g(r['min_atol'])} | {_g(r['min_rtol'])} | {'—' if r['agreement'] is None else format(r['agreement'], '.2%')} | {acc} | {verdict} |"
        )
    if report["cross_framework_agreement"] is not None:
        lines += ["", f"PyTorch vs Keras eager models (trained separately, weights differ): argmax agreement "
                      f"{report['cross_framework_agreement']:.2%}."]
    notes = [f"- `{r['variant']}`: {r['support']} — {r['support_note']}" for r in report["variants"]]
    batch = [f"- `{r['variant']}`: {r['batch_note']}" for r in report["variants"] if r.get("batch_note")]
    return "\n".join(lines + ["", "Support status:", *notes] + (["", "Batch axis:", *batch] if batch else [])) + "\n"


def to_json(run: ParityRun) -> dict:
    return {"samples": run.samples, "cross_framework_agreement": run.cross_framework_agreement,
            "passed": not run.failures, "failures": run.failures, "variants": [_row(v) for v in run.variants]}


def plot(run: ParityRun, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    floor = 1e-9  # exact matches are drawn at the floor so log scale keeps them
    variants = list(reversed(run.variants))
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(variants) + 1.6))
    data = [np.maximum(v.diffs, floor) for v in variants]
    box = ax.boxplot(data, vert=False, whis=(0, 100), widths=0.6, patch_artist=True)
    for patch, v in zip(box["boxes"], variants):
        patch.set_facecolor("#f4a6a6" if not v.result.passed else ("#bcd7f5" if v.config.precision == "fp32" else "#f5deb3"))
    ax.set_yticks(range(1, len(variants) + 1), [v.config.name for v in variants])
    ax.set_xscale("log")
    atol = FLOAT_TOLERANCE.atol
    ax.axvline(atol, color="tab:red", linestyle="--", linewidth=1, label=f"default float atol {atol:g}")
    ax.set_xlabel(f"|variant − eager reference| per logit (whiskers: min–max; exact = {floor:g})")
    ax.set_title(f"Parity: distribution of absolute logit differences, {run.samples} test samples")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_reports(run: ParityRun, folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"json": folder / "parity.json", "markdown": folder / "parity.md", "png": folder / "parity.png"}
    paths["json"].write_text(json.dumps(to_json(run), indent=2) + "\n")
    paths["markdown"].write_text(markdown(run))
    plot(run, paths["png"])
    return paths

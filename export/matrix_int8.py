"""The int8 trade-off curve inside `crossdeploy matrix`: for an int8 pathway of a spec that asks for it
(`int8_keep_float = N` in the spec, or `--int8-keep-float N`), the variant is re-quantized with 0, 1, …, N of its
most sensitive nodes kept in float (export/int8_sensitivity.py), on the spec's own samples and calibration
inputs, and the matrix reports accuracy, agreement with the float sibling and file size for each N, with the
curve as a PNG beside the report.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from crossdeploy.repository import ModelRepository

from .int8_report import short


def keep_float_curve(repository: ModelRepository, variant: str, up_to: int, out: Path, x: np.ndarray,
                     y: np.ndarray | None, calibration: np.ndarray) -> dict:
    """Runs the curve and returns what the matrix row carries: each point, the ranked nodes, the report files."""
    from .int8_report import write_report
    from .int8_sensitivity import measure

    result = measure(repository, variant, limit=None, models=Path(out) / "models", samples=(x, y, calibration),
                     up_to=up_to)
    folder = write_report(result, Path(out))
    found = result.to_dict()  # what sensitivity.json holds, without reading it back
    points = [{"keep_float": p["keep_float"], "kept": p["kept"], **{k: p["measure"][k] for k in
               ("accuracy", "agreement", "max_abs", "mean_abs", "size")}} for p in found["curve"]]
    return {"float_variant": found["float_variant"], "float_accuracy": found["float_accuracy"],
            "float_size": found["float_size"], "points": points,
            "ranked": [layer["node"] for layer in found["layers"] if layer["quantized"]][:max(up_to, 1)],
            "plot": str(folder / "keep_float.png"), "report": str(folder / "sensitivity.md")}


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.2%}"


def _rel(path: str, folder: Path) -> str:
    return str(Path(path).relative_to(folder)) if Path(path).is_relative_to(folder) else path


def markdown_section(results, report_folder: Path) -> list[str]:
    """The matrix.md section: one table per int8 row that carries a curve (or why it has none)."""
    lines: list[str] = []
    for r in [r for r in results if r.int8_curve]:
        curve = r.int8_curve
        lines += [f"### int8 trade-off: {r.model} ({r.framework}) `{r.pathway}`", ""]
        if curve.get("error"):
            lines += [f"The keep-float curve could not be made: {curve['error']}", ""]
            continue
        lines += [f"Float sibling `{curve['float_variant']}`: accuracy {_pct(curve['float_accuracy'])}, "
                  f"{curve['float_size']:,} bytes. Each row re-quantizes with the N most sensitive nodes kept "
                  f"float ([curve]({_rel(curve['plot'], report_folder)}), "
                  f"[per-node ranking]({_rel(curve['report'], report_folder)})).", "",
                  "| N kept float | node added to the float ones | accuracy | agreement | max abs | size (bytes) |",
                  "|---:|---|---:|---:|---:|---:|"]
        for p in curve["points"]:
            added = f"`{short(p['kept'][-1])}`" if p["kept"] else "— (every node quantized, as shipped)"
            lines.append(f"| {p['keep_float']} | {added} | {_pct(p['accuracy'])} | "
                         f"{_pct(p['agreement'])} | {p['max_abs']:.3g} | {p['size']:,} |")
        lines.append("")
    return lines


__all__ = ["keep_float_curve", "markdown_section"]

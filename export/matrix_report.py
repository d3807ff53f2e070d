"""The deployability report of `crossdeploy matrix`: a rich table, Markdown, JSON, a PNG heatmap and JUnit XML."""

from __future__ import annotations

import json
import math
import re
import xml.etree.ElementTree as ET
from pathlib import Path

from rich.console import Console
from rich.table import Table

from .matrix_int8 import markdown_section
from .matrix_results import STATUSES, MatrixRun, PathwayResult
from .pathways import PATHWAYS

STYLE = {"ok": "green", "ok with remedy": "cyan", "export failed": "bold red", "conversion failed": "red", "load failed": "magenta",
         "runtime failed": "bold magenta", "parity failed": "yellow"}
REMEDY_COLOUR = "#67a9cf"  # `ok with remedy`: passes, but not as it stands
COLOUR = {"export failed": "#b2182b", "conversion failed": "#ef8a62", "load failed": "#c51b7d",
          "runtime failed": "#762a83", "parity failed": "#fdb863"}


def _g(value: float | None) -> str:
    if value is None:
        return "—"
    return "0" if value == 0 else f"{value:.1e}"


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.2%}"


def _ms(value: float | None) -> str:
    return "—" if value is None else (f"{value * 1000:.0f} µs" if value < 1 else f"{value:.2f} ms")


def _size(value: int | None) -> str:
    if value is None:
        return "—"
    return f"{value / 1024:,.0f} KB" if value < 10 * 1024**2 else f"{value / 1024**2:,.1f} MB"


def _first(message: str, width: int = 110) -> str:
    line = message.splitlines()[0] if message else ""
    return line if len(line) <= width else line[: width - 1] + "…"


def status_text(r: PathwayResult, quote: str = "") -> str:
    """`ok with <remedy>` for a pathway that passed with one; its status otherwise."""
    return f"ok with {quote}{r.remedy}{quote}" if r.remedy and r.ok else r.status


def remedy_lines(r: PathwayResult) -> list[str]:
    """What a remedied row gave up and what it costs, or every remedy a failed row was tried with."""
    tried = [f"{a['remedy']} → {a['status']}: {_first(a['message'], 300)}" for a in r.remedy_attempts
             if a["remedy"] != r.remedy]
    if r.remedy and r.ok:
        lines = [f"ok with remedy {r.remedy} instead of {_first(r.remedy_replaces, 160)}; serving cost: {r.remedy_cost}"]
        return lines + ([f"remedies that did not pass first: {'; '.join(tried)}"] if tried else [])
    return [f"remedies tried, none passed: {'; '.join(tried)}"] if tried else []


def print_table(run: MatrixRun, console: Console | None = None) -> None:
    console = console or Console()
    for spec in run.specs:
        rows = [r for r in run.results if r.model == spec.name and r.framework == spec.framework]
        acc = f", source accuracy {spec.source_accuracy:.2%}" if spec.source_accuracy is not None else ""
        table = Table(title=f"{spec.name} ({spec.framework}): {spec.samples} samples{acc}, {spec.seconds:.0f} s")
        for column in ("pathway", "status", "max abs", "agree", "acc", "p50 b1", "size", "batch", "message"):
            table.add_column(column, justify="right" if column in ("max abs", "agree", "acc", "p50 b1", "size") else "left",
                             overflow="fold" if column == "message" else "ellipsis")
        for r in rows:
            mark = "" if r.required else " [dim](optional)[/]"
            table.add_row(r.pathway, f"[{STYLE[r.status]}]{status_text(r)}[/]{mark}", _g(r.max_abs), _pct(r.agreement),
                          _pct(r.accuracy), _ms(r.p50_ms), _size(r.size_bytes), r.batch, _first(r.message, 90))
        console.print(table)
        for r in rows:
            for line in remedy_lines(r):
                console.print(f"  [cyan]{r.pathway}[/]: {line}", highlight=False)
    failures = run.required_failures
    counts = {s: sum(r.status == s for r in run.results) for s in STATUSES}
    console.print("pathways: " + ", ".join(f"{n} {s}" for s, n in counts.items() if n))
    for r in failures:
        console.print(f"[bold red]✗ required {r.model} ({r.framework}) {r.pathway}: {r.status}: {_first(r.message)}")


PLOT = re.compile(r"\(plot: ([^()\s]+\.png)\)")


def _plot_link(message: str, folder: Path) -> str:
    """A failing row's diagnosis plot (export/diverge.py), linked from the report folder it lies in."""
    found = PLOT.search(message or "")
    if not found:
        return ""
    plot, folder = Path(found.group(1)).resolve(), folder.resolve()
    return f" [where it diverges]({plot.relative_to(folder) if plot.is_relative_to(folder) else plot})"


def markdown(run: MatrixRun, folder: Path = Path("."), curves: bool = True) -> str:
    """`curves`: with the int8 keep-float tables (docs/ shows them on a page of their own)."""
    lines = [f"Deployability matrix, {run.created}. Each pathway ends in one of: {', '.join(f'`{s}`' for s in STATUSES)}. "
             "*max abs*: the largest |variant − source model| over every output value of the spec's samples; "
             "*agree*: argmax agreement with the source model; *p50 b1*: in-process median latency at batch 1; "
             f"*batch*: how the artifact treats the batch axis. A step that runs past {run.timeout:g} s is killed.", ""]
    for spec in run.specs:
        acc = f"; the source model's accuracy {spec.source_accuracy:.2%}" if spec.source_accuracy is not None else ""
        lines += [f"### {spec.name} ({spec.framework})", "",
                  f"{spec.description or spec.path} — {spec.samples} samples{acc}; {spec.seconds:.0f} s.", "",
                  "| pathway | status | chain | max abs | agree | accuracy | p50 b1 | size | batch | message |",
                  "|---|---|---|---:|---:|---:|---:|---:|---|---|"]
        for r in [r for r in run.results if r.model == spec.name and r.framework == spec.framework]:
            status = f"**{r.status}**" if not r.ok and r.required else status_text(r, "`")
            status += "" if r.required else " (optional)"
            message = " ".join(r.message.split())[:300].replace("|", "\\|") if r.message else ""
            message += _plot_link(r.message, folder)
            lines.append(f"| `{r.pathway}` | {status} | {r.chain or '—'} | {_g(r.max_abs)} | {_pct(r.agreement)} | "
                         f"{_pct(r.accuracy)} | {_ms(r.p50_ms)} | {_size(r.size_bytes)} | {r.batch} | {message} |")
        notes = [(r.pathway, n) for r in run.results if r.model == spec.name and r.framework == spec.framework
                 for n in remedy_lines(r) + r.notes]
        batch = [(r.pathway, r.batch_note) for r in run.results if r.model == spec.name and r.framework == spec.framework and r.batch_note]
        if notes or batch:
            lines += [""] + [f"- `{p}`: {n}" for p, n in batch + notes]
        lines.append("")
    lines += markdown_section(run.results, folder) if curves else []
    failures = run.required_failures
    if run.not_run:
        lines.append("Required but not run (left out by --pathway): " + ", ".join(f"{m} `{p}`" for m, p in run.not_run) + ".")
    lines.append("Required pathways: all passed." if not failures else
                 "Required pathways that failed: " + ", ".join(f"{r.model} ({r.framework}) `{r.pathway}`" for r in failures) + ".")
    if run.registered:
        lines.append(f"Registered into the model repository: {', '.join(f'`{n}`' for n in run.registered)}.")
    return "\n".join(lines) + "\n"


def heatmap(run: MatrixRun, path: Path) -> None:
    """Pathways × models; a passing cell is shaded by its max abs diff, a failed one coloured by its status."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    models = list(dict.fromkeys(r.model for r in run.results))
    pathways = [p.name for p in PATHWAYS if any(r.pathway == p.name for r in run.results)]
    cells: dict[tuple[str, str], PathwayResult] = {(r.pathway, r.model): r for r in run.results}
    fig, ax = plt.subplots(figsize=(2.2 * len(models) + 3.8, 0.42 * len(pathways) + 2.2))
    cmap = plt.get_cmap("Greens_r")
    for i, pathway in enumerate(pathways):
        for j, model in enumerate(models):
            r = cells.get((pathway, model))
            if r is None:
                colour, text = "#eeeeee", "—"
            elif r.remedy:
                colour, text = REMEDY_COLOUR, f"ok with\n{r.remedy}"
            elif r.ok:
                diff = max(r.max_abs or 0.0, 1e-8)
                colour = cmap(0.15 + 0.6 * (math.log10(diff) + 8) / 8)
                text = _g(r.max_abs) + ("" if r.precision != "int8" else " (int8)")
            else:
                colour, text = COLOUR[r.status], r.status
            ax.add_patch(plt.Rectangle((j, i), 1, 1, facecolor=colour, edgecolor="white", linewidth=2))
            weight = "bold" if r is not None and not r.ok and r.required else "normal"
            ax.text(j + 0.5, i + 0.5, text, ha="center", va="center", fontsize=8, weight=weight,
                    color="white" if r is not None and not r.ok and r.status != "parity failed" else "black")
    ax.set_xlim(0, len(models))
    ax.set_ylim(len(pathways), 0)
    ax.set_xticks([j + 0.5 for j in range(len(models))], models)
    ax.set_yticks([i + 0.5 for i in range(len(pathways))], pathways)
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    ax.xaxis.tick_top()
    handles = [Patch(color=cmap(0.3), label="ok (shade: max abs diff)"), Patch(color=REMEDY_COLOUR, label="ok with remedy")] + [Patch(color=c, label=s) for s, c in COLOUR.items()]
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.02), ncol=3, fontsize=8, frameon=False)
    ax.set_title("Deployability: every pathway × model (cell text: max abs diff vs the source model, or the failure)",
                 fontsize=9, pad=24)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f]")  # tools' colour codes and NULs: not allowed in XML 1.0


def _xml(text: str) -> str:
    return XML_ILLEGAL.sub("", text)


def junit(run: MatrixRun, path: Path) -> None:
    """One test case per pathway. A failed required pathway is a <failure>; a failed optional one is <skipped>,
    so the CI's verdict is the matrix's exit code."""
    suites = ET.Element("testsuites", name="crossdeploy matrix")
    for spec in run.specs:
        rows = [r for r in run.results if r.model == spec.name and r.framework == spec.framework]
        suite = ET.SubElement(suites, "testsuite", name=f"{spec.name}.{spec.framework}", tests=str(len(rows)),
                              failures=str(sum(r.required and not r.ok for r in rows)),
                              skipped=str(sum(not r.required and not r.ok for r in rows)), time=f"{spec.seconds:.1f}")
        for r in rows:
            case = ET.SubElement(suite, "testcase", classname=f"crossdeploy.matrix.{spec.name}.{spec.framework}",
                                 name=r.pathway, time=f"{(r.export_seconds or 0):.2f}")
            if r.ok:
                ET.SubElement(case, "system-out").text = (f"max abs {_g(r.max_abs)}, agreement {_pct(r.agreement)}, "
                                                          f"accuracy {_pct(r.accuracy)}, p50 {_ms(r.p50_ms)}, batch {r.batch}")
                if r.remedy:  # passes, but only with a remedy: said where a CI shows it
                    properties = ET.SubElement(case, "properties")
                    ET.SubElement(properties, "property", name="remedy", value=r.remedy)
                    ET.SubElement(properties, "property", name="remedy_cost", value=_xml(r.remedy_cost))
                    case.find("system-out").text = _xml(f"ok with remedy {r.remedy} ({r.remedy_cost}); "
                                                        + case.find("system-out").text)
            elif r.required:
                ET.SubElement(case, "failure", message=_xml(f"{r.status}: {_first(r.message, 200)}"), type=r.status).text = _xml(r.message)
            else:
                ET.SubElement(case, "skipped", message=_xml(f"{r.status} (not required): {_first(r.message, 200)}"))
    ET.indent(suites)
    ET.ElementTree(suites).write(path, encoding="utf-8", xml_declaration=True)


def write_reports(run: MatrixRun, folder: Path, junit_path: Path | None = None) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"json": folder / "matrix.json", "markdown": folder / "matrix.md", "png": folder / "matrix.png"}
    paths["json"].write_text(json.dumps(run.to_json(), indent=2) + "\n")
    paths["markdown"].write_text(markdown(run, folder))
    heatmap(run, paths["png"])
    if junit_path is not None:
        junit_path.parent.mkdir(parents=True, exist_ok=True)
        junit(run, junit_path)
        paths["junit"] = junit_path
    return paths

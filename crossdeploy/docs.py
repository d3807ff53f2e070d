"""`crossdeploy docs` (`make docs`): every table and figure of measured numbers in docs/ is written here from the
reports under <workdir>/reports, never pasted by hand.

A page marks what is generated, and everything between the two markers is replaced:

    <!-- generated: parity-table -->
    ...
    <!-- /generated -->

The prose around the markers is hand-written and left alone. When a region's report is missing (a fresh clone
that has not run `make bench`), the region keeps what an earlier run wrote there, or, if nothing was ever
written, says which command makes the report. Running it twice on the same reports changes nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from crossdeploy.docs_sources import SOURCES, UNREADABLE
from crossdeploy.errors import ConfigError

REGION = re.compile(r"(?P<open><!-- generated: (?P<name>[\w-]+) -->\n)(?P<body>.*?)(?P<close><!-- /generated -->)", re.S)
OPENING = re.compile(r"<!-- generated: ([\w-]+) -->")
NOT_YET = "_Not measured yet:"


@dataclass
class Filled:
    page: Path
    region: str
    outcome: str  # "written from <report>" | "kept: ..." | "not measured yet: ..."


def shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def render(name: str, body: str, reports: Path, docs: Path) -> tuple[str, str]:
    """The region's new body and what happened to it."""
    source = SOURCES[name]
    report = reports / source.report
    where = f"`{shown(report)}` (made by `{source.command}`)"
    if report.is_file():
        try:
            rendered = source.render(report, docs)
            return f"{rendered.rstrip()}\n\n<sub>Written by `make docs` from {where}.</sub>\n", f"written from {shown(report)}"
        except UNREADABLE as exc:
            problem = f"{shown(report)} does not read ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
    else:
        problem = f"no {shown(report)}"
    if body.strip() and not body.startswith(NOT_YET):
        return body, f"kept from an earlier run: {problem}; `{source.command}` writes it"
    return (f"{NOT_YET} `{source.command}` writes `{shown(report)}`, then `make docs` fills this in._\n",
            f"not measured yet: {problem}")


def fill_page(page: Path, reports: Path, docs: Path) -> list[Filled]:
    text = page.read_text()
    opened = OPENING.findall(text)
    matched = [m.group("name") for m in REGION.finditer(text)]
    if opened != matched:
        raise ConfigError(str(page), f"a generated region is not closed with <!-- /generated --> (opened: {', '.join(opened)})")
    unknown = sorted(set(matched) - set(SOURCES))
    if unknown:
        raise ConfigError(str(page), f"unknown generated region(s) {', '.join(unknown)} (known: {', '.join(SOURCES)})")
    filled: list[Filled] = []

    def replace(match: re.Match) -> str:
        body, outcome = render(match.group("name"), match.group("body"), reports, docs)
        filled.append(Filled(page, match.group("name"), outcome))
        return match.group("open") + body + match.group("close")

    new = REGION.sub(replace, text)
    if new != text:
        page.write_text(new)
    return filled


def write_docs(docs: Path, reports: Path) -> list[Filled]:
    """Fill every generated region of every page in `docs` from the reports in `reports`."""
    if not docs.is_dir():
        raise ConfigError(str(docs), "no such docs folder")
    return [filled for page in sorted(docs.glob("*.md")) for filled in fill_page(page, reports, docs)]

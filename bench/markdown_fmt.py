"""Number and table formatting shared by the latency report's sections (bench/report.py, bench/engines_report.py)."""

from __future__ import annotations

import math

MISSING = "—"


def sig(value: float | None, digits: int = 3) -> str:
    """`digits` significant digits, never in scientific notation; large numbers as whole, comma-grouped."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    if value == 0:
        return "0"
    if abs(value) >= 10 ** (digits - 1):
        return f"{value:,.0f}"
    decimals = digits - 1 - math.floor(math.log10(abs(value)))
    return f"{value:.{decimals}f}"


def percent(fraction: float | None) -> str:
    if fraction is None:
        return MISSING
    value = fraction * 100
    return f"{value:.1f}%" if abs(value) < 10 else f"{value:.0f}%"


def with_spread(median: float, relative: float | None) -> str:
    return f"{sig(median)} ±{percent(relative)}" if relative is not None else sig(median)


def cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def table(header: list[str], rows: list[list[object]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(cell(value) for value in row) + " |" for row in rows]

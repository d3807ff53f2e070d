"""The gateway's memory request, from what was measured on this repository when a report holds it.

In order: the soak's report (the gateway's own RSS with every variant loaded, sampled each second under load:
the figure a pod needs), then the bench's cold-start footprints (each variant's RSS added in a fresh process,
its framework's import included; used only when they cover every format of the repository, summed per format:
an upper estimate, since formats sharing a framework count its import twice), else a documented default.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from crossdeploy.repository import VariantConfig

# compose.yaml's figure: the gateway holding all 15 variants is about 1.1 GB resident.
DEFAULT_MB = 1200.0
HEADROOM = 1.10  # over the measured RSS: allocator growth between measurements
STEP_MB = 64  # requests are rounded up to this


@dataclass(frozen=True)
class Footprint:
    rss_mb: float
    source: str  # where the figure came from, said in the manifest

    def request_mi(self) -> int:
        return STEP_MB * math.ceil(self.rss_mb * HEADROOM / STEP_MB)

    def limit_mi(self, max_in_flight: int, max_body_bytes: int) -> int:
        """The request plus every request in flight holding a body of the largest size the gateway accepts."""
        bodies = max_in_flight * max_body_bytes / 2**20
        return STEP_MB * math.ceil((self.request_mi() + bodies) / STEP_MB)


def _read(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def from_soak(reports: Path) -> Footprint | None:
    path = reports / "soak" / "report.json"
    report = _read(path)
    rss = (report or {}).get("rss") or {}
    figure = max((v for v in (rss.get("warm_mb"), rss.get("last_mb")) if isinstance(v, (int, float))), default=None)
    if not figure:
        return None
    return Footprint(figure, f"{path}: the gateway's RSS serving every variant under the soak's load "
                            f"({figure:.0f} MB, commit {report.get('commit', '?')})")


def from_bench(reports: Path, configs: list[VariantConfig]) -> tuple[Footprint | None, str]:
    """The bench's figure, or None and why it is not used."""
    path = reports / "bench" / "latest" / "results.json"
    report = _read(path)
    if report is None:
        return None, f"no bench report at {path}"
    largest: dict[str, float] = {}
    for row in report.get("coldstart") or []:
        if isinstance(row.get("rss_added_mb"), (int, float)):
            largest[row["format"]] = max(largest.get(row["format"], 0.0), row["rss_added_mb"])
    formats = sorted({c.format for c in configs})
    missing = [f for f in formats if f not in largest]
    if missing:
        return None, f"{path} measured {len(formats) - len(missing)} of the repository's {len(formats)} formats " \
                     f"(not {', '.join(missing)})"
    figure = sum(largest[f] for f in formats)
    return Footprint(figure, f"{path}: the sum over the repository's formats of each format's largest cold-start "
                             f"RSS ({figure:.0f} MB; an upper estimate, each counts its framework's import)"), ""


def footprint(reports: Path, configs: list[VariantConfig]) -> Footprint:
    soak = from_soak(reports)
    if soak:
        return soak
    bench, why_not = from_bench(reports, configs)
    if bench:
        return bench
    return Footprint(DEFAULT_MB, f"default {DEFAULT_MB:.0f} MB (compose.yaml: ~1.1 GB resident with all 15 "
                                 f"variants); no soak report under {reports}, and {why_not}")

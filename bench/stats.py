"""The statistics behind the latency report: percentiles, perf_analyzer-style stability windows, spread across
repeats, and the tie rule. Pure numpy; unit-tested on synthetic series with known answers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from .results import Percentiles, Run, Scenario, Spread, Verdict

TOLERANCE = 0.10  # consecutive windows must agree within 10 %, as perf_analyzer's default stability threshold
STABLE_WINDOWS = 3


@dataclass
class Window:
    """One measurement window: every request's latency (ms), its wall time, rows served, CPU spent, errors."""

    latencies_ms: np.ndarray
    elapsed_s: float
    rows: int
    cpu_s: float | None = None
    errors: int = 0
    server_ms: dict[str, float] | None = None

    @property
    def requests_per_s(self) -> float:
        return len(self.latencies_ms) / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def p50(self) -> float:
        return float(np.percentile(self.latencies_ms, 50)) if len(self.latencies_ms) else float("nan")


def percentiles(samples_ms) -> Percentiles:
    a = np.asarray(samples_ms, dtype=np.float64)
    if a.size == 0:
        raise ValueError("no samples")
    p50, p90, p99 = np.percentile(a, [50, 90, 99])
    return Percentiles(count=int(a.size), p50=float(p50), p90=float(p90), p99=float(p99), mean=float(a.mean()),
                       min=float(a.min()), max=float(a.max()))


def cdf(samples_ms, points: int = 100) -> list[tuple[float, float]]:
    a = np.sort(np.asarray(samples_ms, dtype=np.float64))
    if a.size == 0:
        return []
    fractions = np.linspace(0.0, 1.0, min(points, a.size) + 1)[1:]
    return [(float(np.quantile(a, f)), float(f)) for f in fractions]


def agree(values: list[float], tolerance: float = TOLERANCE) -> bool:
    """True when every value is within `tolerance` of their mean (perf_analyzer's rule, applied to p50 and
    throughput of the last windows)."""
    a = np.asarray(values, dtype=np.float64)
    if a.size == 0 or not np.all(np.isfinite(a)):
        return False
    centre = a.mean()
    return bool(centre > 0 and np.all(np.abs(a - centre) <= tolerance * centre))


def measure_stable(window: Callable[[], Window], *, min_windows: int = STABLE_WINDOWS, max_windows: int = 10,
                   tolerance: float = TOLERANCE) -> tuple[list[Window], bool]:
    """Takes windows until the last `min_windows` agree on p50 and on throughput, or `max_windows` is reached
    (then the result is flagged unstable, never silently reported as stable)."""
    windows: list[Window] = []
    while len(windows) < max_windows:
        windows.append(window())
        last = windows[-min_windows:]
        if len(last) == min_windows and agree([w.p50 for w in last], tolerance) and \
                agree([w.requests_per_s for w in last], tolerance):
            return last, True
    return windows[-min_windows:], False


def merge(windows: list[Window], stable: bool, batch: int) -> Run:
    """The stable windows of one repeat, merged into one run."""
    latencies = np.concatenate([w.latencies_ms for w in windows])
    if latencies.size == 0:  # every request was refused: no latency to report (the errors say why)
        empty = Percentiles(count=0, p50=0.0, p90=0.0, p99=0.0, mean=0.0, min=0.0, max=0.0)
        return Run(latency=empty, throughput=0.0, requests_per_s=0.0, windows=len(windows), stable=False,
                   errors=sum(w.errors for w in windows))
    elapsed = sum(w.elapsed_s for w in windows)
    requests = len(latencies)
    cpu = [w.cpu_s for w in windows if w.cpu_s is not None]
    servers = [w.server_ms for w in windows if w.server_ms]
    server_ms = {k: float(np.mean([s[k] for s in servers])) for k in servers[0]} if servers else None
    return Run(
        latency=percentiles(latencies), throughput=requests * batch / elapsed if elapsed else 0.0,
        requests_per_s=requests / elapsed if elapsed else 0.0,
        cpu_ms_per_inference=(sum(cpu) * 1e3 / requests) if cpu and requests else None,
        windows=len(windows), stable=stable, window_p50s=[w.p50 for w in windows],
        errors=sum(w.errors for w in windows), cdf=cdf(latencies), server_ms=server_ms,
    )


def spread(values) -> Spread:
    a = np.asarray(list(values), dtype=np.float64)
    median = float(np.median(a))
    return Spread(median=median, min=float(a.min()), max=float(a.max()),
                  relative=float((a.max() - a.min()) / median) if median else 0.0)


def judge(group: str, candidates: dict[str, Spread]) -> Verdict:
    """Lowest median p50 wins, unless the difference is within the noise: two candidates tie when their medians
    differ by no more than the larger of their two ranges (max - min across repeats)."""
    if not candidates:
        raise ValueError(f"{group}: nothing to judge")
    ranked = sorted(candidates.items(), key=lambda item: item[1].median)
    winner, best = ranked[0]

    def tied(other: Spread) -> bool:
        noise = max(best.max - best.min, other.max - other.min)
        return other.median - best.median <= noise

    tied_with = [name for name, s in ranked[1:] if tied(s)]
    if len(ranked) == 1:
        return Verdict(group=group, winner=winner, runner_up=None, winner_p50=best.median, runner_up_p50=None,
                       margin=None, tie=False)
    runner, second = ranked[1]
    margin = (second.median - best.median) / second.median if second.median else None
    return Verdict(group=group, winner=winner, runner_up=runner, winner_p50=best.median, runner_up_p50=second.median,
                   margin=margin, tie=bool(tied_with), tied_with=tied_with)


def scenario(kind: str, runs: list[Run], **fields) -> Scenario:
    """A scenario from its repeats: the median and range of p50, p99 and throughput across them."""
    return Scenario(kind=kind, runs=runs, p50=spread(r.latency.p50 for r in runs), p99=spread(r.latency.p99 for r in runs),
                    throughput=spread(r.throughput for r in runs), stable=all(r.stable for r in runs), **fields)

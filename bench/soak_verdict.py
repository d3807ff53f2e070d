"""The soak's figures and checks, from its per-second timeline: per phase goodput (as a share of capacity), p50/p99,
refusals with and without Retry-After, errors by kind and time to recover; over the soak RSS growth and p99 drift."""

from __future__ import annotations

import time
from collections import Counter

import numpy as np

from .provenance import machine
from .soak_load import OK, REFUSED, REFUSED_BARE

GOODPUT_SHARE = 0.80  # served under overload, as a share of capacity
P99_OVERLOAD_MS = 1000.0
RSS_GROWTH = 0.05
RECOVERED_FOR_S = 3  # seconds in a row without refusals, at the p99 of before, to call the gateway recovered
RECOVERY_LIMIT_S = 10.0
ERRORS = ("timeout", "reset", "connect")  # the client saw no HTTP answer at all


def percentile(arrays: list[np.ndarray], q: float) -> float | None:
    values = np.concatenate(arrays) if arrays else np.empty(0)
    return float(np.percentile(values, q)) if values.size else None


def recovery(rows: list[dict], baseline_p99: float) -> float | None:
    """Seconds from the phase's start until RECOVERED_FOR_S seconds in a row are refusal-free with a p99 within
    twice (or 20 ms of) the capacity phase's; None when that never happens."""
    if not rows or baseline_p99 is None:
        return None
    bound = max(2 * baseline_p99, baseline_p99 + 20.0)
    start = rows[0]["second"]
    for i in range(len(rows) - RECOVERED_FOR_S + 1):
        run = rows[i:i + RECOVERED_FOR_S]
        if all(not r["kinds"].get(REFUSED) and not r["kinds"].get(REFUSED_BARE) and r["p99_ms"] is not None and r["p99_ms"] <= bound
               for r in run):
            return float(rows[i]["second"] - start)
    return None


def phase_figures(timeline, phases, capacity: float) -> list[dict]:
    out = []
    for index, (name, seconds, rate, clients) in enumerate(phases):
        rows = [r for r in timeline.rows if r["phase"] == index]
        kinds = Counter()
        for r in rows:
            kinds.update(r["kinds"])
        answers = sum(kinds.values())
        span = max(len(rows), 1)
        figure = {"index": index, "name": name, "seconds": round(seconds, 1), "open_loop_rate": round(rate, 1),
                  "closed_clients": clients, "answers": answers, "kinds": dict(kinds),
                  "goodput_per_s": kinds.get(OK, 0) / span, "share_of_capacity": kinds.get(OK, 0) / span / capacity,
                  "p50_ms": percentile(timeline.latencies.get(index, []), 50),
                  "p99_ms": percentile(timeline.latencies.get(index, []), 99),
                  "refused_share": (kinds.get(REFUSED, 0) + kinds.get(REFUSED_BARE, 0)) / answers if answers else 0.0,
                  "rss_mb_end": next((r["rss_mb"] for r in reversed(rows) if r.get("rss_mb")), None)}
        if name == "overload" and index >= 1:  # against what the same gateway served in the phase before
            before = out[index - 1]["goodput_per_s"]
            figure["share_of_phase_before"] = figure["goodput_per_s"] / before if before else None
        if name == "back" and index >= 2:
            figure["recovery_s"] = recovery(rows, out[index - 2]["p99_ms"])
        out.append(figure)
    return out


def rss_growth(timeline) -> dict:
    samples = [(r["second"], r["rss_mb"]) for r in timeline.rows if r.get("rss_mb")]
    if len(samples) < 2:
        return {"first_mb": None, "warm_mb": None, "last_mb": None, "growth": None}
    first_phase_end = next((p["start_s"] for p in timeline.phases[1:]), samples[-1][0])
    warm = [mb for s, mb in samples if s < first_phase_end][-1]  # after the first phase: every model has run
    last = samples[-1][1]
    return {"first_mb": samples[0][1], "warm_mb": warm, "last_mb": last, "growth": (last - warm) / warm}


def checks(figures: list[dict], rss: dict, totals: Counter) -> list[dict]:
    overload = [f for f in figures if f["name"] == "overload"]
    backs = [f for f in figures if "recovery_s" in f]
    found = [
        {"name": f"goodput under {len(overload)} overload phase(s) ≥ {GOODPUT_SHARE:.0%} of capacity, each",
         "value": ", ".join(f"{f['share_of_capacity']:.0%}" for f in overload),
         "met": all(f["share_of_capacity"] >= GOODPUT_SHARE for f in overload)},
        {"name": f"p99 under overload ≤ {P99_OVERLOAD_MS:.0f} ms, each phase",
         "value": ", ".join("none served" if f["p99_ms"] is None else f"{f['p99_ms']:.0f} ms" for f in overload),
         "met": all(f["p99_ms"] is not None and f["p99_ms"] <= P99_OVERLOAD_MS for f in overload)},
        {"name": "every 503 carried Retry-After", "value": f"{totals.get(REFUSED_BARE, 0)} without",
         "met": not totals.get(REFUSED_BARE)},
        {"name": "no answer other than 200 and 503, no timeout, no reset",
         "value": ", ".join(f"{k} {v}" for k, v in sorted(totals.items()) if k not in (OK, REFUSED)) or "none",
         "met": all(k in (OK, REFUSED) for k in totals)},
        {"name": f"recovered within {RECOVERY_LIMIT_S:.0f} s after each overload",
         "value": ", ".join("never" if f["recovery_s"] is None else f"{f['recovery_s']:.0f} s" for f in backs),
         "met": all(f["recovery_s"] is not None and f["recovery_s"] <= RECOVERY_LIMIT_S for f in backs)},
    ]
    if rss["growth"] is not None:
        found.append({"name": f"RSS growth after the first phase < {RSS_GROWTH:.0%}",
                      "value": f"{rss['warm_mb']:.0f} → {rss['last_mb']:.0f} MB ({rss['growth']:+.1%})",
                      "met": rss["growth"] < RSS_GROWTH})
    return found


def judge(timeline, phases, capacity: float, options, labels: list[str], commit: str) -> dict:
    figures = phase_figures(timeline, phases, capacity)
    totals = Counter()
    for f in figures:
        totals.update(f["kinds"])
    rss = rss_growth(timeline)
    steady = [f for f in figures if f["name"] != "overload"]
    return {
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "commit": commit, "machine": machine().model_dump(),
        "command": f"python -m crossdeploy.bench.soak --minutes {options.minutes:g}"
                   + "".join(f" --server-arg={a}" for a in options.server_args),
        "minutes": options.minutes, "capacity_per_s": capacity, "factor": options.factor, "mix": labels,
        "requests": sum(totals.values()), "kinds": dict(totals), "phases": figures, "rss": rss,
        "p99_drift": {"first_ms": steady[0]["p99_ms"], "last_ms": steady[-1]["p99_ms"]} if steady else None,
        "timeline": timeline.rows, "checks": checks(figures, rss, totals),
    }


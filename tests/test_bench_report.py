"""The latency report's writer on a synthetic BenchReport: every file written, results.json valid against its
own schema, the charts real PNGs (and skipped when their data is absent), ties never called wins."""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone

import pytest
from PIL import Image

from crossdeploy.bench.plots import breakdown_data, write_plots
from crossdeploy.bench.report import markdown, sig, write_report
from crossdeploy.bench.results import (BenchReport, ColdStart, EngineRun, Machine, Percentiles, ProcessGroup, Run, Scenario,
                                       Spread, Verdict)

CHARTS = ["latency_cdf.png", "throughput_vs_concurrency.png", "pathways.png", "breakdown.png", "engines.png"]
TIE_GROUP = "in-process, batch 1, 1 thread"
WIN_GROUP = "gateway v2-binary, batch 1, C=4"


def spread(values: list[float]) -> Spread:
    median = sorted(values)[len(values) // 2]
    return Spread(median=median, min=min(values), max=max(values), relative=(max(values) - min(values)) / median)


def run(p50: float, batch: int = 1, stable: bool = True, server: dict | None = None, rps: float | None = None) -> Run:
    rps = rps if rps is not None else 1000 / p50
    cdf = [(p50 * f, min(1.0, 0.5 * f)) for f in (0.5, 0.8, 1.0, 1.3, 1.7, 2.0)]
    return Run(latency=Percentiles(count=500, p50=p50, p90=p50 * 1.4, p99=p50 * 2.2, mean=p50 * 1.1, min=p50 * 0.6,
                                   max=p50 * 4),
               throughput=rps * batch, requests_per_s=rps, cpu_ms_per_inference=p50 * 0.9, windows=4,
               stable=stable, window_p50s=[p50, p50 * 1.01], cdf=cdf, server_ms=server)


def scenario(kind: str, variant: str, layer_or_protocol: str, batch: int, p50s: list[float], unstable: bool = False,
             server: dict | None = None, **fields) -> Scenario:
    runs = [run(p, batch, stable=not (unstable and i == 0), server=server) for i, p in enumerate(p50s)]
    how = {"layer": layer_or_protocol} if kind == "inprocess" else {"protocol": layer_or_protocol}
    return Scenario(kind=kind, variant=variant, **how, batch=batch, runs=runs,
                    p50=spread([r.latency.p50 for r in runs]), p99=spread([r.latency.p99 for r in runs]),
                    throughput=spread([r.throughput for r in runs]), stable=all(r.stable for r in runs), **fields)


def inprocess(variant: str, batch: int, p50: float, unstable: bool = False) -> Scenario:
    return scenario("inprocess", variant, "adapter", batch, [p50, p50 * 1.03, p50 * 0.98], unstable=unstable, threads=1)


def gateway(variant: str, protocol: str, concurrency: int, p50: float, server: dict, engine: str = "inprocess") -> Scenario:
    return scenario("gateway", variant, protocol, 1, [p50, p50 * 1.05, p50 * 0.97], server=server, mode="closed",
                    concurrency=concurrency, engine=engine)


SERVER = {"queue": 0.05, "decode": 0.08, "inference": 0.12, "encode": 0.04}
RAY_SERVER = {**SERVER, "queue": 0.9}  # the hop from the ingress to a replica
ENGINES = [
    EngineRun(engine="inprocess", cold_start_s=9.5,
              memory=[ProcessGroup(name="gateway", processes=1, pss_mb=1480.0, rss_mb=1510.0)]),
    EngineRun(engine="ray", cold_start_s=41.2,
              memory=[ProcessGroup(name="models-tensorflow", processes=1, pss_mb=744.0, rss_mb=810.0),
                      ProcessGroup(name="gateway", processes=1, pss_mb=127.0, rss_mb=192.0),
                      ProcessGroup(name="driver", processes=1, pss_mb=133.0, rss_mb=196.0),
                      ProcessGroup(name="ray", processes=9, pss_mb=560.0, rss_mb=920.0,
                                   members=["ProxyActor", "ServeController", "gcs_server", "raylet"])]),
]


def make_report(gateway_scenarios: bool = True) -> BenchReport:
    scenarios = [inprocess("torch-onnx", 1, 0.0812), inprocess("torch-eager", 1, 0.243),
                 inprocess("keras-tflite-int8", 1, 0.0835, unstable=True),
                 inprocess("torch-onnx", 64, 1.91), inprocess("torch-eager", 64, 3.4), inprocess("keras-tflite-int8", 64, 2.2)]
    if gateway_scenarios:
        scenarios += [gateway("torch-onnx", protocol, c, 0.45 * c ** 0.5, SERVER)
                      for protocol in ("v2-json", "v2-binary") for c in (1, 4)]
        scenarios += [gateway("keras-eager", "v2-json", 1, 0.2, {**SERVER, "inference": 0.4})]  # server > client p50
        scenarios.append(scenario("gateway", "torch-onnx", "v2-binary", 1, [0.5, 0.6, 0.55], mode="open", rate=200.0))
        # the same closed loop through the Ray engine: twice the in-process p50 at each concurrency
        scenarios += [gateway("torch-onnx", "v2-binary", c, 0.9 * c ** 0.5, RAY_SERVER, engine="ray") for c in (1, 4)]
    verdicts = [
        Verdict(group=TIE_GROUP, winner="torch-onnx", runner_up="keras-tflite-int8", winner_p50=0.0812,
                runner_up_p50=0.0835, margin=0.0275, tie=True, tied_with=["keras-tflite-int8"]),
        Verdict(group=WIN_GROUP, winner="torch-onnx", runner_up="keras-eager", winner_p50=0.9, runner_up_p50=1.8,
                margin=0.5, tie=False),
    ]
    return BenchReport(
        created=datetime(2025, 11, 25, 20, 0, tzinfo=timezone.utc), duration_s=754.0, quick=True,
        machine=Machine(platform="Linux-6.1-x86_64", processor="x86_64", cores=8, memory_gb=31.2, python="3.11.7"),
        versions={"torch": "2.13.0", "onnxruntime": "1.20.0"}, git_revision="79a97ad", settings={"repeats": 3},
        scenarios=scenarios, engines=ENGINES if gateway_scenarios else [],
        coldstart=[ColdStart(variant="torch-onnx", format="onnx", load_s=0.041, first_inference_ms=1.7,
                             artifact_bytes=52_224, rss_added_mb=12.5),
                   ColdStart(variant="keras-eager", format="keras", load_s=1.9, first_inference_ms=35.0,
                             artifact_bytes=180_000, rss_added_mb=210.0)],
        verdicts=verdicts, notes=["wrk used 4% of one core", "keras-tflite-int8 at batch 1 flagged unstable"])


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    folder = tmp_path_factory.mktemp("report")
    report = make_report()
    return report, folder, write_report(report, folder)


def table_row(md: str, *fragments: str) -> str:
    rows = [line for line in md.splitlines() if line.startswith("|") and all(f in line for f in fragments)]
    assert len(rows) == 1, (fragments, rows)
    return rows[0]


def test_write_report_writes_every_file(written):
    _, folder, paths = written
    assert set(paths) == {"results.json", "results.schema.json", "report.md", *CHARTS}
    for name, path in paths.items():
        assert path == folder / name and path.is_file() and path.stat().st_size > 0


def test_results_json_validates_against_model_and_schema(written):
    report, _, paths = written
    assert BenchReport.model_validate_json(paths["results.json"].read_text()) == report
    schema = json.loads(paths["results.schema.json"].read_text())
    assert schema == BenchReport.model_json_schema() and "scenarios" in schema["properties"]
    try:
        import jsonschema
    except ImportError:  # not installed here: pydantic's own validation above is the check
        return
    jsonschema.validate(json.loads(paths["results.json"].read_text()), schema)


@pytest.mark.parametrize("name", CHARTS)
def test_every_chart_is_a_sensible_png(written, name):
    path = written[2][name]
    with Image.open(path) as image:
        assert image.format == "PNG"
        width, height = image.size
        image.verify()
    assert 300 <= width <= 4000 and 200 <= height <= 3000, (width, height)


def test_markdown_verdicts_sections_and_links(written):
    report, _, paths = written
    md = paths["report.md"].read_text()
    assert md == markdown(report)
    tie = table_row(md, TIE_GROUP)
    assert "tie (within the noise)" in tie and not re.search(r"\bwins?\b", tie, re.IGNORECASE)
    win = table_row(md, WIN_GROUP)
    assert "wins" in win and "50%" in win and "tie" not in win
    assert md.index("## Verdict") < md.index("## In-process") < md.index("## Through the gateway") \
        < md.index("## Cold start and footprint") < md.index("## How to read this")
    for fragment in ("2025-11-25", "79a97ad", "12 min 34 s", "Quick run:** yes", "8 cores", "coordinated omission",
                     "wrk used 4% of one core"):
        assert fragment in md, fragment
    for name in CHARTS:
        assert f"]({name})" in md


def test_markdown_tables(written):
    md = written[2]["report.md"].read_text()
    unstable = table_row(md, "keras-tflite-int8", "| adapter | 1 |")
    assert "UNSTABLE" in unstable and "1/3 runs" in unstable
    stable = table_row(md, "torch-onnx", "| adapter | 1 |")
    assert "UNSTABLE" not in stable and "0.0812 ±" in stable  # 3 significant digits, spread beside it
    closed = table_row(md, "torch-onnx", "| v2-json |", "C=4")
    assert "| 0.0500 | 0.0800 | 0.120 | 0.0400 | 0 |" in closed  # server parts, errors
    assert "200 req/s offered" in table_row(md, "| open |")
    assert "| torch-onnx | onnx | 0.0410 | 1.70 | 51.0 | 12.5 |" in md


def test_breakdown_uses_representative_variant_and_clamps_the_rest():
    representative, bars = breakdown_data(make_report())
    assert representative == "torch-onnx"  # in 4 closed-loop scenarios, keras-eager in 1
    assert [label.split("\n")[0] for label, _ in bars] == ["v2-binary", "v2-json"]
    label, parts = bars[1]
    assert "torch-onnx, C=1" in label  # the lowest concurrency
    assert parts["client-side rest"] == pytest.approx(0.45 - sum(SERVER.values()))
    report = make_report()
    report.scenarios = [s for s in report.scenarios if s.variant == "keras-eager" or s.kind == "inprocess"]
    _, [(_, parts)] = breakdown_data(report)
    assert parts["client-side rest"] == 0.0  # the server sum exceeds the client p50: clamped, not negative


def test_charts_without_data_are_skipped(tmp_path):
    report = make_report(gateway_scenarios=False)
    written = write_plots(report, tmp_path)
    assert [p.name for p in written] == ["latency_cdf.png", "pathways.png"]
    assert not (tmp_path / "throughput_vs_concurrency.png").exists() and not (tmp_path / "breakdown.png").exists()
    md = markdown(report)
    assert "throughput_vs_concurrency.png" not in md and "_No gateway scenarios in this run._" in md
    empty = report.model_copy(update={"scenarios": [], "coldstart": [], "verdicts": []})
    assert write_plots(empty, tmp_path / "empty") == []
    assert "_No verdicts in this run._" in markdown(empty)


def test_cdf_falls_back_to_any_batch1_inprocess_scenario(tmp_path):
    bare = scenario("inprocess", "torch-eager", "bare", 1, [0.2, 0.21, 0.19], threads=2)
    report = make_report(gateway_scenarios=False).model_copy(update={"scenarios": [bare]})
    assert [p.name for p in write_plots(report, tmp_path)] == ["latency_cdf.png"]


def test_significant_digits():
    assert [sig(v) for v in (0.012345, 1.2345, 12.345, 123.45, 12345.6, 0, None)] == \
        ["0.0123", "1.23", "12.3", "123", "12,346", "0", "—"]


def test_engines_section_sets_ray_beside_inprocess_on_the_same_scenario(written):
    md = written[2]["report.md"].read_text()
    assert md.index("## Through the gateway") < md.index("## Engines") < md.index("## Cold start and footprint")
    # the requests/s of a run is 1000 / p50 here: Ray's p50 is twice the in-process one, so its throughput is half
    row = table_row(md, "| torch-onnx | v2-binary | 4 |")
    assert row == "| torch-onnx | v2-binary | 4 | 1,111 | 556 | 0.900 | 1.80 | 1.98 | 3.96 | 0.50× | 2.0× |"
    assert table_row(md, "| torch-onnx | v2-binary | 1 |").endswith("| 0.50× | 2.0× |")
    assert not [line for line in md.split("## Engines")[1].split("**Memory**")[0].splitlines() if "v2-json" in line]
    assert table_row(md, "| ray | models-tensorflow |") == "| ray | models-tensorflow | 1 | 744 | 810 |"
    assert table_row(md, "| ray | ray (ProxyActor, ServeController, gcs_server, raylet) |").endswith("| 9 | 560 | 920 |")
    assert table_row(md, "| ray | **all processes** |") == "| ray | **all processes** | 12 | 1,564 | 2,118 |"
    assert table_row(md, "| inprocess | 9.50 |") and table_row(md, "| ray | 41.2 |")
    assert "torch-onnx on ray" in table_row(md, "| v2-binary |", "on ray", "C=4")  # the gateway table tells them apart


def test_engines_chart_draws_one_line_per_engine():
    from crossdeploy.bench.engines_report import engines_data

    pair, lines = engines_data(make_report())
    assert pair == ("torch-onnx", "v2-binary") and sorted(lines) == ["inprocess", "ray"]
    assert [c for c, _, _ in lines["ray"]] == [1, 4]
    assert lines["ray"][1][1] == pytest.approx(lines["inprocess"][1][1] / 2)  # half the requests/s at C=4


def test_a_report_from_before_the_engines_still_reads(written):
    saved = json.loads(written[2]["results.json"].read_text())
    del saved["engines"]
    saved["scenarios"] = [{k: v for k, v in s.items() if k != "engine"} for s in saved["scenarios"] if s.get("engine") != "ray"]
    old = BenchReport.model_validate(saved)
    assert old.engines == [] and all(s.engine is None for s in old.scenarios)
    md = markdown(old)
    assert "## Engines" not in md and "engines.png" not in md and "## Through the gateway" in md


def test_the_docs_region_renders_the_engines_and_keeps_an_earlier_one_for_a_single_engine_run(written, tmp_path):
    from crossdeploy.docs_sources import engines_report

    _, folder, paths = written
    docs = tmp_path / "docs"
    docs.mkdir()
    region = engines_report(paths["results.json"], docs)
    assert region.startswith("### Engines") and "| torch-onnx | v2-binary | 4 |" in region
    assert "](bench/engines.png)" in region and (docs / "bench" / "engines.png").read_bytes() == paths["engines.png"].read_bytes()
    single = make_report().model_copy(update={"engines": ENGINES[:1]})
    (tmp_path / "single.json").write_text(single.model_dump_json())
    with pytest.raises(ValueError, match="compared no engines"):
        engines_report(tmp_path / "single.json", docs)


def test_verdicts_compare_pathways_within_one_engine_never_across():
    from crossdeploy.bench.run import verdicts

    found = {v.group: v for v in verdicts(make_report().scenarios)}
    inprocess, ray = found["gateway v2-binary, batch 1, C=4"], found["gateway v2-binary, batch 1, C=4, on ray"]
    assert (inprocess.winner, ray.winner) == ("torch-onnx", "torch-onnx")
    assert inprocess.winner_p50 == pytest.approx(0.9) and ray.winner_p50 == pytest.approx(1.8)  # neither overwrote the other

"""The latency comparison: its statistics on synthetic series with known answers, its load generator against a
server that stalls (coordinated omission) and against answers sized, chunked and split across reads, the strict
floor against onnxruntime, a quick run on both gateway engines that writes a report valid against its schema, and
a server stopped with whatever it started."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time

import numpy as np
import psutil
import pytest
from PIL import Image

from crossdeploy.bench.loadgen import Connection, LoadGenerator, Target, encode_request
from crossdeploy.bench.requests import build
from crossdeploy.bench.results import BenchReport
from crossdeploy.bench.servers import free_port
from crossdeploy.bench.stats import Window, agree, judge, measure_stable, merge, percentiles, spread


def test_percentiles_of_a_known_series():
    p = percentiles(np.arange(1, 101))
    assert (p.count, p.p50, p.p90, p.p99, p.mean, p.min, p.max) == (100, 50.5, pytest.approx(90.1), pytest.approx(99.01), 50.5, 1, 100)
    with pytest.raises(ValueError):
        percentiles([])


def test_windows_agree_within_ten_percent_of_their_mean():
    assert agree([100, 105, 95]) and not agree([100, 120, 100]) and not agree([0, 0, 0]) and not agree([1, np.nan, 1])


def _windows(p50s):
    calls = iter(p50s)

    def window():
        value = next(calls)
        return Window(np.full(50, value), elapsed_s=1.0, rows=50)
    return window


def test_measurement_stops_at_three_agreeing_windows():
    windows, stable = measure_stable(_windows([10, 20, 10, 10.5, 10.2, 99]), max_windows=10)
    assert stable and [w.p50 for w in windows] == [10, 10.5, 10.2]


def test_a_series_that_never_settles_is_flagged_not_reported_stable():
    windows, stable = measure_stable(_windows([10, 20] * 10), max_windows=6)
    assert not stable and len(windows) == 3
    run = merge(windows, stable, batch=4)
    assert not run.stable and run.windows == 3 and run.throughput == pytest.approx(4 * 150 / 3.0)


def test_spread_and_the_tie_rule():
    s = spread([1.0, 2.0, 3.0])
    assert (s.median, s.min, s.max, s.relative) == (2.0, 1.0, 3.0, 1.0)
    a, b, c = spread([9.5, 10.0, 10.5]), spread([10.3, 10.8, 11.3]), spread([14.9, 15.0, 15.1])
    tie = judge("g", {"b": b, "a": a})
    assert tie.winner == "a" and tie.tie and tie.tied_with == ["b"]  # 0.8 apart, within a range of 1.0
    win = judge("g", {"a": a, "c": c})
    assert win.winner == "a" and not win.tie and win.margin == pytest.approx(5 / 15)
    alone = judge("g", {"a": a})
    assert alone.runner_up is None and not alone.tie


class StallingServer:
    """A raw HTTP/1.1 server answering at once, except one request that it holds for `stall` seconds."""

    def __init__(self, stall: float, at: int):
        self.stall, self.at, self.seen = stall, at, 0
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()

    async def handle(self, reader, writer):
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                await reader.readexactly(length)
                self.seen += 1
                if self.seen == self.at:
                    await asyncio.sleep(self.stall)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    def __enter__(self):
        async def serve():
            self.server = await asyncio.start_server(self.handle, "127.0.0.1", self.port)
            self.ready.set()
        threading.Thread(target=lambda: (self.loop.run_until_complete(serve()), self.loop.run_forever()), daemon=True).start()
        self.ready.wait(10)
        return self

    def __exit__(self, *exc):
        self.loop.call_soon_threadsafe(self.loop.stop)


def test_open_loop_counts_the_requests_a_stall_delayed_closed_loop_hides_them():
    generator = LoadGenerator()
    try:
        with StallingServer(stall=0.3, at=50) as server:
            target = Target("127.0.0.1", server.port, "/x")
            request = encode_request(target, b"{}", {})
            closed, _ = generator.closed_loop(target, request, 1, 1.0, rows=1)
        with StallingServer(stall=0.3, at=50) as server:
            target = Target("127.0.0.1", server.port, "/x")
            opened, _ = generator.open_loop(target, encode_request(target, b"{}", {}), rate=200, seconds=1.0, rows=1,
                                            max_connections=1)
    finally:
        generator.close()
    # closed loop: the client waited with the server, so only the one stalled request looks slow
    assert (closed.latencies_ms > 200).sum() == 1
    # open loop at 200/s: every request due during the 300 ms stall waited for it (~60 of them), measured from when it was due
    assert (opened.latencies_ms > 100).sum() >= 30 and opened.errors == 0
    assert np.percentile(opened.latencies_ms, 90) > 50 > np.percentile(closed.latencies_ms, 90)


class ScriptedServer:
    """A raw HTTP/1.1 server answering its requests, in turn, with the given responses; each response is written
    in the given pieces with a pause between them, so the client receives it in several reads."""

    def __init__(self, responses: list[list[bytes]]):
        self.responses, self.seen = responses, 0
        self.port = free_port()

    async def handle(self, reader, writer):
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                await reader.readexactly(int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0]))
                self.seen += 1
                for i, piece in enumerate(self.responses[(self.seen - 1) % len(self.responses)]):
                    if i:
                        await asyncio.sleep(0.005)
                    writer.write(piece)
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    async def roundtrips(self, count: int) -> list[int]:
        server = await asyncio.start_server(self.handle, "127.0.0.1", self.port)
        target = Target("127.0.0.1", self.port, "/x")
        connection = await Connection.open(target)
        try:
            return [await connection.roundtrip(encode_request(target, b"{}", {})) for _ in range(count)]
        finally:
            connection.close()
            server.close()
            await asyncio.sleep(0.05)  # the handler sees the end of the stream and returns before the loop closes


CHUNKED = [b"HTTP/1.1 200 OK\r\nTransfer-Enc", b"oding: chunked\r\nContent-Type: application/json\r\n\r\n5\r\n{\"a\":",
           b"\r\n3\r\n 1}\r\n", b"0\r\n\r\n"]
SIZED = [b"HTTP/1.1 200 OK\r\nInference-Header-Content-Length: 3\r\nContent-Length: 7\r\n\r\nabc", b"defg"]
REFUSED = [b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 13\r\n\r\n{\"error\":\"x\"}"]


def test_the_load_generator_reads_chunked_and_sized_answers_whole_on_one_connection():
    server = ScriptedServer([CHUNKED, SIZED, REFUSED])
    assert asyncio.run(server.roundtrips(6)) == [200, 200, 503, 200, 200, 503]
    assert server.seen == 6


def test_an_unreadable_answer_is_a_connection_error_not_a_crash():
    server = ScriptedServer([[b"HTTP/1.1 2x0 OK\r\nContent-Length: 0\r\n\r\n"]])
    with pytest.raises(ConnectionError, match="unreadable response"):
        asyncio.run(server.roundtrips(1))


def test_the_floor_answers_a_v2_request_with_onnxruntimes_logits_and_shares_no_code_with_the_gateway(repository):
    import onnxruntime as ort
    from fastapi.testclient import TestClient

    from crossdeploy.bench.floor import create_floor

    config, record = repository.get("torch-onnx")
    model = str(repository.version_dir("torch-onnx", record.version) / "model.onnx")
    x = np.random.default_rng(0).random((4, 8, 8), dtype=np.float32)
    request = build("v2-json", "torch-onnx", {config.inputs[0].name: x})
    with TestClient(create_floor(model)) as client:
        response = client.post(request.path, content=request.body, headers=request.headers)
    assert response.status_code == 200
    (output,) = response.json()["outputs"]
    expected = ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, {config.inputs[0].name: x})[0]
    assert output["name"] == config.outputs[0].name and output["shape"] == [4, 10]
    np.testing.assert_allclose(np.asarray(output["data"], dtype=np.float32).reshape(4, 10), expected, rtol=1e-5, atol=1e-6)
    probe = ("import sys, crossdeploy.bench.floor as f; s = f.single_threaded_session(sys.argv[1]).get_session_options(); "
             "print(sorted(m for m in sys.modules if m.startswith(('crossdeploy.serving', 'crossdeploy.runtimes'))), "
             "s.intra_op_num_threads, s.inter_op_num_threads, s.get_session_config_entry('session.intra_op.allow_spinning'))")
    said = subprocess.run([sys.executable, "-c", probe, model], capture_output=True, text=True, check=True).stdout.split()
    assert said == ["[]", "1", "1", "0"]


RAY_GROUPS = {"gateway", "models-torch", "models-tensorflow", "models-onnx", "models-executorch", "driver", "ray"}


@pytest.mark.slow
def test_a_quick_run_on_both_engines_writes_a_report_valid_against_its_schema(repository, tmp_path):
    from crossdeploy.bench.run import run_bench
    from crossdeploy.docs_sources import engines_report

    folder = run_bench(repository.root, tmp_path / "bench", quick=True, variants=["torch-onnx", "keras-tflite"],
                       protocols=["v2-json", "v2-binary", "tfserving", "torchserve"], engines=["inprocess", "ray"])
    report = BenchReport.model_validate_json((folder / "results.json").read_text())
    schema = json.loads((folder / "results.schema.json").read_text())
    assert schema == BenchReport.model_json_schema()
    kinds = {(s.kind, s.layer or s.protocol) for s in report.scenarios}
    assert {("inprocess", "adapter"), ("inprocess", "bare"), ("gateway", "v2-json"), ("gateway", "v2-binary"),
            ("gateway", "tfserving"), ("gateway", "torchserve")} <= kinds
    assert any(s.mode == "open" for s in report.scenarios) and {c.variant for c in report.coldstart} == {"torch-onnx", "keras-tflite"}
    gateway = [s for s in report.scenarios if s.kind == "gateway"]
    assert all(s.runs[0].errors == 0 and s.runs[0].latency.count > 0 for s in gateway)
    assert all(set(s.runs[0].server_ms) == {"queue", "decode", "inference", "encode"} for s in gateway)
    # the same sweep on each engine: every closed-loop point of one is a point of the other
    closed = {engine: {(s.variant, s.protocol, s.concurrency) for s in gateway if s.engine == engine and s.mode == "closed"}
              for engine in ("inprocess", "ray")}
    assert closed["inprocess"] == closed["ray"] and len(closed["ray"]) == 2 * 4 * 2
    assert not [s for s in gateway if s.engine == "ray" and s.mode == "open"]  # the open loop: in-process only
    assert report.verdicts and report.versions["onnxruntime"] and report.machine.cores >= 1
    assert [e.engine for e in report.engines] == ["inprocess", "ray"] and all(e.cold_start_s > 0 for e in report.engines)
    inprocess, ray = ({g.name: g for g in e.memory} for e in report.engines)
    assert set(inprocess) == {"gateway"} and inprocess["gateway"].processes == 1
    assert set(ray) == RAY_GROUPS and all(ray[d].processes == 1 for d in RAY_GROUPS - {"ray"})
    assert {"raylet", "gcs_server", "ServeController", "ProxyActor"} <= set(ray["ray"].members)
    assert all(g.rss_mb > 10 and g.pss_mb and g.pss_mb <= g.rss_mb for e in report.engines for g in e.memory)
    # TensorFlow's replica holds TensorFlow; the ingress holds no framework at all
    assert ray["models-tensorflow"].pss_mb > 2 * ray["gateway"].pss_mb
    for png in ("latency_cdf.png", "throughput_vs_concurrency.png", "pathways.png", "breakdown.png", "engines.png"):
        path = folder / png
        assert path.stat().st_size > 10_000, png
        with Image.open(path) as image:
            assert image.size[0] > 300 and image.size[1] > 200
    md = (folder / "report.md").read_text()
    assert "## Engines" in md and "| torch-onnx | v2-binary | 16 |" in md and "](engines.png)" in md
    (tmp_path / "docs").mkdir()
    region = engines_report(folder / "results.json", tmp_path / "docs")
    assert "| ray | models-onnx | 1 |" in region and (tmp_path / "docs" / "bench" / "engines.png").is_file()
    assert (tmp_path / "bench" / "latest").resolve() == folder.resolve()


def test_stopping_a_server_also_stops_what_it_started(tmp_path):
    """A server whose child outlives SIGTERM (as a Ray engine's raylet could): stop() leaves neither behind."""
    from crossdeploy.bench.servers import stop

    child = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(120)"
    parent = f"import subprocess, sys, time; c = subprocess.Popen([sys.executable, '-c', {child!r}]); print(c.pid, flush=True); time.sleep(120)"
    server = subprocess.Popen([sys.executable, "-c", parent], stdout=subprocess.PIPE, text=True)
    grandchild = psutil.Process(int(server.stdout.readline()))
    try:
        time.sleep(0.3)  # the child has set its SIGTERM handler
        stop([server], grace_s=1)
        assert server.poll() is not None
        assert not grandchild.is_running() or grandchild.status() == psutil.STATUS_ZOMBIE
    finally:
        if grandchild.is_running():
            grandchild.kill()


def test_engines_default_to_both_only_on_a_full_run_and_refuse_what_they_cannot_do():
    from crossdeploy.bench.engines import choose
    from crossdeploy.errors import ConfigError

    assert choose(None, quick=False, partial=False, url=None) == ["inprocess", "ray"]
    assert choose(None, quick=True, partial=False, url=None) == choose(None, quick=False, partial=True, url=None) == ["inprocess"]
    assert choose(["ray", "ray"], quick=True, partial=True, url=None) == ["ray"]
    assert choose(None, quick=False, partial=False, url="http://127.0.0.1:1") == []
    with pytest.raises(ConfigError, match="not with --url"):
        choose(["ray"], quick=False, partial=False, url="http://127.0.0.1:1")


@pytest.mark.parametrize("option, value, message", [
    ("--variants", "nope", "--variants: not in the repository: nope (known: torch-onnx)"),
    ("--engines", "inprocess,kubernetes", "--engines: unknown: kubernetes (known: inprocess, ray)"),
])
def test_bench_cli_refuses_an_unknown_name_in_one_line(tmp_path, option, value, message):
    (tmp_path / "repo" / "torch-onnx").mkdir(parents=True)
    result = subprocess.run([sys.executable, "-m", "crossdeploy.cli", "bench", "--repository", str(tmp_path / "repo"),
                             option, value, "--out", str(tmp_path / "out")], capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == f"crossdeploy: error: {message}"

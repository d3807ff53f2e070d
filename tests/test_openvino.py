"""OpenVINO as a second engine for the ONNX variants: the same `model.onnx` run by OpenVINO's CPU plugin agrees with
onnxruntime under each variant's own parity rule, at batch 1 and a larger batch, with the threads it was given,
refuses a file whose sha256 does not match, and sends nothing home (openvino-telemetry is not installed)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from crossdeploy.errors import CrossdeployError, ModelNotReady
from crossdeploy.export.parity import check_parity
from crossdeploy.models.data import test_samples as digits_test_split
from crossdeploy.runtimes import open_runtime
from crossdeploy.runtimes.onnx_rt import OnnxRuntime
from crossdeploy.runtimes.openvino_rt import OpenVinoRuntime

ONNX_VARIANTS = ["torch-onnx", "keras-onnx", "torch-onnx-int8"]


@pytest.fixture(scope="module")
def split():
    return digits_test_split()


def both(repository, name: str, threads: int = 2):
    return (open_runtime(repository, name, threads=threads).load(),
            open_runtime(repository, name, threads=threads, runtime="openvino").load())


def test_the_onnx_variants_are_the_ones_checked_here(repository):
    assert sorted(c.name for c in repository.list() if c.format == "onnx") == sorted(ONNX_VARIANTS)


@pytest.mark.parametrize("name", ONNX_VARIANTS)
def test_openvino_agrees_with_onnxruntime_on_the_test_split(repository, split, name):
    x, labels = split
    ort_runtime, ov_runtime = both(repository, name)
    assert isinstance(ort_runtime, OnnxRuntime) and isinstance(ov_runtime, OpenVinoRuntime)
    assert ov_runtime.metadata["precision"] == "f32"  # not the bf16 the plugin picks by itself on this CPU
    reference, got = ort_runtime.predict({"image": x}), ov_runtime.predict({"image": x})
    tolerance = ov_runtime.config.tolerance  # the variant's own rule: values for fp32, agreement for int8
    result = check_parity(reference, got, tolerance, labels, variant=f"{name}@openvino", reference_name=f"{name}@onnxruntime")
    assert result.passed, result.failures
    assert result.samples == len(x) == 360
    if ov_runtime.config.precision == "int8":
        assert tolerance.atol is None and result.agreement >= tolerance.min_agreement
    else:
        assert tolerance.atol is not None and result.outputs[0].max_abs <= tolerance.atol


@pytest.mark.parametrize("name", ONNX_VARIANTS)
def test_batch_one_and_a_larger_batch_give_the_same_rows(repository, split, name):
    x, _ = split
    _, runtime = both(repository, name)
    batch = runtime.predict({"image": x[:64]})["logits"]
    assert batch.shape == (64, 10)
    rows = np.concatenate([runtime.predict({"image": x[i : i + 1]})["logits"] for i in range(8)])
    assert rows.shape == (8, 10)
    np.testing.assert_allclose(rows, batch[:8], atol=1e-5, rtol=1e-5)
    assert (rows.argmax(-1) == batch[:8].argmax(-1)).all()


@pytest.mark.parametrize("threads", [1, 2])
def test_the_compiled_model_runs_with_the_threads_it_was_given(repository, threads):
    runtime = open_runtime(repository, "torch-onnx", threads=threads, runtime="openvino").load()
    assert runtime.metadata["threads"] == threads and runtime.metadata["streams"] == 1


def test_a_result_is_not_overwritten_by_the_next_call(repository, split):
    x, _ = split
    runtime = open_runtime(repository, "keras-onnx", runtime="openvino").load()
    first = runtime.predict({"image": x[:4]})["logits"]
    kept = first.copy()
    runtime.predict({"image": x[4:8]})
    np.testing.assert_array_equal(first, kept)


def test_calls_from_several_threads_each_get_their_own_answer(repository, split):
    x, _ = split
    runtime = open_runtime(repository, "torch-onnx", runtime="openvino").load()
    expected = [runtime.predict({"image": x[i : i + 3]})["logits"] for i in range(0, 48, 3)]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda i: runtime.predict({"image": x[i : i + 3]})["logits"], range(0, 48, 3)))
    for a, b in zip(got, expected):
        np.testing.assert_array_equal(a, b)


def test_unload_makes_it_not_ready(repository, split):
    runtime = open_runtime(repository, "torch-onnx", runtime="openvino").load()
    runtime.unload()
    with pytest.raises(ModelNotReady):
        runtime.predict({"image": split[0][:1]})


def test_an_unknown_runtime_or_a_variant_openvino_cannot_run_is_one_line(repository):
    with pytest.raises(CrossdeployError, match=r"^no runtime 'tensorrt' for format 'onnx' \(alternative runtimes: openvino \(onnx\)\)$"):
        open_runtime(repository, "torch-onnx", runtime="tensorrt")
    with pytest.raises(CrossdeployError, match=r"^no runtime 'openvino' for format 'savedmodel'"):
        open_runtime(repository, "torch-savedmodel", runtime="openvino")


def test_naming_the_recorded_runtime_is_the_default(repository):
    assert isinstance(open_runtime(repository, "torch-onnx", runtime="onnxruntime"), OnnxRuntime)
    assert isinstance(open_runtime(repository, "torch-onnx"), OnnxRuntime)


# Loads and runs a variant with OpenVINO, then takes the converter path (ovc), the one part of openvino that reports
# usage when openvino-telemetry is installed, and says whether the telemetry package could be imported.
TELEMETRY_PROBE = """
import importlib.util, sys
import numpy as np
import openvino as ov
from crossdeploy.repository import ModelRepository
from crossdeploy.runtimes import open_runtime
repository = ModelRepository(sys.argv[1])
runtime = open_runtime(repository, "torch-onnx", runtime="openvino").load()
assert runtime.predict({"image": np.zeros((2, 8, 8), np.float32)})["logits"].shape == (2, 10)
ov.convert_model(str(runtime.artifact))
print("telemetry importable:", importlib.util.find_spec("openvino_telemetry") is not None)
"""


def test_openvino_writes_nothing_under_home_and_has_no_telemetry_to_send(repository, tmp_path):
    assert importlib.util.find_spec("openvino_telemetry") is None  # installed with --no-deps, see the Makefile
    home = tmp_path / "home"
    home.mkdir()
    # CI=true would switch telemetry off by itself: without it, only the package's absence keeps it quiet.
    env = {k: v for k, v in os.environ.items() if k != "CI"} | {"HOME": str(home)}
    proc = subprocess.run([sys.executable, "-c", TELEMETRY_PROBE, str(repository.root)], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "telemetry importable: False"
    assert not (home / "intel").exists()
    assert list(home.iterdir()) == []


def test_the_bench_times_the_onnx_variants_on_openvino_beside_onnxruntime(repository, tmp_path):
    import io

    from rich.console import Console

    from crossdeploy.bench.run import LineProgress, Plan, in_process, verdicts

    plan = Plan.make(repository, quick=True, variants=["torch-onnx", "keras-tflite", "torch-onnx-int8"], protocols=None,
                     repeats=None, url=None, runtimes=["openvino"])
    assert plan.alternatives == ("torch-onnx@openvino", "torch-onnx-int8@openvino")
    assert plan.variants == ["torch-onnx", "keras-tflite", "torch-onnx-int8"]  # the gateway still serves these only
    assert any(n.startswith("torch-onnx@openvino: the variant's own file run by openvino 2026.4.1") for n in plan.notes)
    plan.variants, plan.alternatives, plan.batches, plan.window_s, plan.max_windows = (
        ["torch-onnx"], ("torch-onnx@openvino",), (1,), 0.02, 3)
    with LineProgress(console=Console(file=io.StringIO())) as progress:
        scenarios = in_process(repository.root, plan, progress, tmp_path)
    timed = {(s.variant, s.layer) for s in scenarios}
    assert timed == {(v, layer) for v in ("torch-onnx", "torch-onnx@openvino") for layer in ("adapter", "bare")}
    assert all(s.p50.median > 0 for s in scenarios)
    [verdict] = verdicts(scenarios)  # one in-process group: the two engines on the same file are compared
    assert verdict.group == "in-process, batch 1, 1 thread"
    assert {verdict.winner, verdict.runner_up} == {"torch-onnx", "torch-onnx@openvino"}


@pytest.mark.parametrize("extra, message", [
    (["--variants", "torch-onnx", "--runtimes", "tensorrt"], "--runtimes: unknown: tensorrt (known: openvino)"),
    (["--variants", "torch-tflite", "--runtimes", "openvino"], "--runtimes: none of the chosen variants can run on openvino"),
])
def test_bench_refuses_a_runtime_it_cannot_use_in_one_line(repository, tmp_path, extra, message):
    result = subprocess.run([sys.executable, "-m", "crossdeploy.cli", "bench", "--repository", str(repository.root),
                             *extra, "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == f"crossdeploy: error: {message}"


def test_openvino_missing_is_one_line_naming_the_install_step(monkeypatch):
    """openvino comes from `make install` (no-deps), not from the package's dependencies: without it, one line."""
    import sys

    from crossdeploy.errors import CrossdeployError
    from crossdeploy.runtimes import runtime_class

    monkeypatch.setitem(sys.modules, "openvino", None)  # what `import openvino` meets when it is not installed
    monkeypatch.delitem(sys.modules, "crossdeploy.runtimes.openvino_rt", raising=False)
    with pytest.raises(CrossdeployError, match=r"runtime 'openvino' is not installed \(openvino\): `make install` installs it"):
        runtime_class("onnx", "openvino")

"""`crossdeploy matrix` with an int8 keep-float curve: asked by the spec (`int8_keep_float = N`) or by
`--int8-keep-float N`, each int8 row carries the re-quantized points 0..N, the curve's PNG stays beside the
report, and a spec that asks for nothing gets no curve."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from crossdeploy.cli import main

SPECS = Path(__file__).parents[1] / "models" / "specs"


def _with_keep_float(tmp_path: Path, name: str, count: int) -> Path:
    text = (SPECS / f"{name}.toml").read_text()
    spec = tmp_path / f"{name}.toml"
    spec.write_text(text.replace("\n[[inputs]]", f"\nint8_keep_float = {count}\n\n[[inputs]]", 1))
    return spec


def _rows(out: Path) -> dict[str, dict]:
    return {r["pathway"]: r for r in json.loads((out / "matrix.json").read_text())["results"]}


def _flags(*pathways: str) -> list[str]:
    return [arg for p in pathways for arg in ("--pathway", p)]


def _check_curve(row: dict, points: int, out: Path) -> list[dict]:
    curve = row["int8_curve"]
    assert curve and "error" not in curve, row
    found = curve["points"]
    assert [p["keep_float"] for p in found] == list(range(points))
    assert found[0]["kept"] == [] and all(len(p["kept"]) == p["keep_float"] for p in found)
    # N = 0 is the shipped quantization: the same predictions the row's own parity check measured
    assert found[0]["accuracy"] == pytest.approx(row["accuracy"])
    # every node kept float is one of the ranked, most sensitive first
    assert found[-1]["kept"] == curve["ranked"][: points - 1]
    # the most sensitive node kept float takes error away, and its float weights cost bytes
    assert found[1]["mean_abs"] < found[0]["mean_abs"] and found[1]["size"] > found[0]["size"]
    assert max(p["accuracy"] for p in found) >= found[0]["accuracy"]
    plot = Path(curve["plot"])
    assert plot.is_relative_to(out) and plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"  # outlives the worker's scratch
    return found


def test_the_spec_asks_for_the_curve_and_a_spec_that_does_not_gets_none(tmp_path, workdir):
    out = tmp_path / "report"
    code = main(["matrix", str(_with_keep_float(tmp_path, "digits-cnn-pytorch", 2)), str(SPECS / "digits-cnn-keras.toml"),
                 "--workdir", str(workdir), "--out", str(out), "--no-latency",
                 *_flags("torch-onnx", "torch-onnx-int8", "keras-eager", "keras-tflite", "keras-tflite-int8")])
    assert code == 0
    rows = _rows(out)
    _check_curve(rows["torch-onnx-int8"], 3, out)
    assert rows["keras-tflite-int8"]["int8_curve"] is None and rows["torch-onnx"]["int8_curve"] is None
    markdown = (out / "matrix.md").read_text()
    assert "### int8 trade-off: digits-cnn (pytorch) `torch-onnx-int8`" in markdown
    assert "(int8/torch-onnx-int8/keep_float.png)" in markdown and "keras-tflite-int8`" not in markdown.split("int8 trade-off")[-1]


def test_the_command_line_asks_for_the_curve_of_a_tflite_int8_row(tmp_path, workdir):
    out = tmp_path / "report"
    code = main(["matrix", str(SPECS / "digits-cnn-keras.toml"), "--workdir", str(workdir), "--out", str(out),
                 "--no-latency", "--int8-keep-float", "1", *_flags("keras-eager", "keras-tflite", "keras-tflite-int8")])
    assert code == 0
    found = _check_curve(_rows(out)["keras-tflite-int8"], 2, out)
    assert (out / "int8" / "keras-tflite-int8" / "models" / "keep_float_1" / "model.tflite").stat().st_size == found[1]["size"]


def test_a_curve_without_its_float_sibling_says_why_and_the_row_keeps_its_verdict(tmp_path, workdir):
    out = tmp_path / "report"
    code = main(["matrix", str(SPECS / "digits-cnn-keras.toml"), "--workdir", str(workdir), "--out", str(out),
                 "--no-latency", "--int8-keep-float", "1", *_flags("keras-eager", "keras-tflite-int8")])
    assert code == 0
    row = _rows(out)["keras-tflite-int8"]
    assert row["status"] == "ok" and "keras-tflite pathway" in row["int8_curve"]["error"]
    assert "could not be made" in (out / "matrix.md").read_text()


@pytest.mark.parametrize("value", ["-1", "65", "\"two\""])
def test_a_bad_keep_float_count_is_refused_before_anything_runs(value, tmp_path, workdir, capsys):
    out = tmp_path / "report"
    spec = tmp_path / "bad.toml"
    spec.write_text((SPECS / "digits-cnn-pytorch.toml").read_text().replace("\n[[inputs]]", f"\nint8_keep_float = {value}\n[[inputs]]", 1))
    assert main(["matrix", str(spec), "--workdir", str(workdir), "--out", str(out)]) == 2
    assert "int8_keep_float" in capsys.readouterr().err and not out.exists()


def test_a_curve_that_outlives_its_step_leaves_the_rows_verdict_as_it_was(tmp_path, workdir):
    """The supervisor's side of a keep-float step killed at the timeout: the row already has its result; the
    curve says why it is missing and the pathways still to run are left for the next worker."""
    from rich.progress import Progress

    from crossdeploy.export.matrix_results import PathwayResult
    from crossdeploy.export.matrix_supervisor import SpecSupervisor, Watch
    from crossdeploy.export.modelspec import load_spec

    spec = load_spec(SPECS / "digits-cnn-keras.toml", workdir)
    with Progress(disable=True) as progress:
        supervisor = SpecSupervisor(spec, tmp_path, workdir, ["keras-tflite-int8", "keras-onnx"], 600, 1, progress,
                                    progress.add_task(""), int8_keep_float=2)
        supervisor._store(PathwayResult("digits-cnn", "keras", "keras-tflite-int8", "ok", True, "parity"))
        ended = "timed out after 600 s in the keep-float step (the worker was killed)"
        supervisor._settle(Watch(deadline=0.0, pathway="keras-tflite-int8", step="keep-float", ended=ended))
    row = supervisor.results["keras-tflite-int8"]
    assert row.status == "ok" and row.int8_curve == {"error": ended}
    assert supervisor.remaining == ["keras-onnx"] and "keras-tflite-int8" not in supervisor.failed

"""check_parity on synthetic arrays with known answers, then on the real repository; and proof it can fail."""

import json
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from crossdeploy.errors import CrossdeployError, ParityError
from crossdeploy.export.parity import check_parity, raise_on_failure, run_parity
from crossdeploy.export.pathways import PATHWAYS
from crossdeploy.repository import ModelRepository
from crossdeploy.export.reports import markdown, write_reports
from crossdeploy.repository import FLOAT_TOLERANCE, INT8_TOLERANCE, Tolerance

REF = np.array([[1.0, -2.0, 0.0, 4.0], [0.5, 3.0, -1.0, 0.0]], np.float32)


def test_elementwise_rule_and_minimum_tolerances():
    cand = REF + np.array([[5e-5, 0, 0, 4e-3], [0, 0, 0, 0]], np.float32)
    result = check_parity({"logits": REF}, {"logits": cand}, Tolerance(atol=1e-4, rtol=1e-3), variant="v")
    out = result.outputs[0]
    assert out.max_abs == pytest.approx(4e-3, rel=1e-3) and out.min_atol == out.max_abs
    assert out.min_rtol == pytest.approx(1e-3, rel=1e-2)  # 4e-3 / 4 is the worst relative error
    # 4e-3 <= 1e-4 + 1e-3*4 = 4.1e-3 passes; so does 5e-5 at |b| = 1
    assert result.passed and result.agreement == 1.0
    tight = check_parity({"logits": REF}, {"logits": cand}, Tolerance(atol=1e-4, rtol=0.0), variant="v")
    assert not tight.passed and "1/8 elements" in tight.failures[0] and "0.004" in tight.failures[0]


def test_a_miss_on_an_exact_zero_has_infinite_min_rtol_but_finite_max_rel():
    cand = REF.copy()
    cand[0, 2] = 1e-6
    out = check_parity({"logits": REF}, {"logits": cand}, FLOAT_TOLERANCE).outputs[0]
    assert out.min_rtol == float("inf") and out.max_rel == pytest.approx(1e-3, rel=1e-2)


def test_every_failure_is_collected_names_then_shapes_then_values():
    reference = {"logits": REF, "probs": REF, "extra": REF}
    candidate = {"logits": REF + 1.0, "probs": REF[:1]}
    result = check_parity(reference, candidate, FLOAT_TOLERANCE, variant="bad")
    text = " | ".join(result.failures)
    assert "output 'extra' is missing" in text and "'probs' has shape [1, 4]" in text and "'logits' max abs diff 1" in text
    assert not result.passed


def test_int8_rule_uses_agreement_and_accuracy_drop():
    labels = REF.argmax(1)
    flipped = REF.copy()
    flipped[1] = [9, 0, 0, 0]  # second sample now predicts class 0: agreement 50 %, accuracy drop 50 points
    result = check_parity({"logits": REF}, {"logits": flipped}, INT8_TOLERANCE, labels, variant="q")
    assert result.agreement == 0.5 and result.accuracy == 0.5 and result.reference_accuracy == 1.0
    assert any("agreement 50.00% < 98.00%" in f for f in result.failures)
    assert any("accuracy drop 50.00 points" in f for f in result.failures)


def test_every_pathway_passes_parity_and_records_it(repository, tmp_path):
    run = run_parity(repository)
    assert [v.config.name for v in run.variants] == [p.name for p in PATHWAYS]  # the guard: all checked
    assert not run.failures, run.failures
    for v in run.variants:
        assert v.result.passed and v.result.samples == 360
        if v.config.precision == "fp32":
            assert v.result.agreement == 1.0 and v.result.outputs[0].max_abs <= 1e-4
        else:
            assert v.result.agreement >= 0.98 and v.result.reference_accuracy - v.result.accuracy <= 0.02
        assert repository.get(v.config.name)[1].parity.passed
    assert run.cross_framework_agreement > 0.9
    paths = write_reports(run, tmp_path)
    assert json.loads(paths["json"].read_text())["passed"] is True
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and paths["png"].stat().st_size > 10_000
    assert "`torch-tflite` | torch → torch.onnx (dynamo) → onnx2tf → TFLite" in markdown(run)


def perturb_onnx_weights(repo: ModelRepository, name: str) -> None:
    """Adds noise to the first conv weight of an exported ONNX file and re-registers it as a new version."""
    config, record = repo.get(name)
    model = onnx.load(str(repo.version_dir(name, record.version) / "model.onnx"))
    for init in model.graph.initializer:
        weights = numpy_helper.to_array(init)
        if weights.ndim == 4:
            init.CopyFrom(numpy_helper.from_array(weights + np.float32(0.05), init.name))
            break
    staged = repo.staging_dir(name)
    onnx.save(model, str(staged / "model.onnx"))
    repo.add(config, staged)


def test_perturbed_weights_are_reported_as_a_parity_failure(scratch_repository):
    perturb_onnx_weights(scratch_repository, "torch-onnx")
    run = run_parity(scratch_repository, variants=["torch-onnx", "torch-export"])
    bad = {v.config.name: v for v in run.variants}["torch-onnx"]
    assert not bad.result.passed and bad.result.outputs[0].max_abs > 1e-3
    assert scratch_repository.get("torch-onnx")[1].parity.passed is False
    with pytest.raises(ParityError, match=r"torch-onnx: output 'logits' max abs diff"):
        raise_on_failure(run)


def test_cli_exits_non_zero_and_names_the_variant(scratch_repository, tmp_path):
    perturb_onnx_weights(scratch_repository, "keras-onnx")
    proc = subprocess.run(
        [sys.executable, "-m", "crossdeploy.cli", "parity", "--repository", str(scratch_repository.root),
         "--workdir", str(tmp_path), "--variant", "keras-onnx"],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 1
    assert "keras-onnx" in proc.stdout and "FAIL" in proc.stdout
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("crossdeploy: error: parity failed: keras-onnx: output 'logits' max abs diff")
    assert "Traceback" not in proc.stderr
    assert (tmp_path / "reports" / "parity" / "parity.md").is_file()  # reports are written before failing


def test_a_failing_variant_says_where_its_chain_first_diverges(scratch_repository, tmp_path):
    """`crossdeploy parity` on a torch -> ONNX variant whose first conv weights were moved names the hop and the
    ONNX Conv node where the numbers first leave the tolerance, and writes the plot it points at."""
    perturb_onnx_weights(scratch_repository, "torch-onnx")
    proc = subprocess.run(
        [sys.executable, "-m", "crossdeploy.cli", "parity", "--repository", str(scratch_repository.root),
         "--workdir", str(tmp_path), "--variant", "torch-onnx"],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert "torch-onnx: first divergence: torch -> ONNX at" in last and "(Conv)" in last, last
    assert (tmp_path / "reports" / "diverge" / "torch-onnx" / "diverge.png").is_file()


def test_an_output_without_classes_has_no_agreement_and_int8_must_compare_values():
    """A regression (one column) has nothing to argmax: agreement is not reported, and an int8 tolerance that
    compares no values cannot pass it."""
    reference = {"y": np.linspace(-1, 1, 20).reshape(20, 1)}
    wrong = {"y": reference["y"] + 5.0}
    int8 = check_parity(reference, wrong, INT8_TOLERANCE, variant="q")
    assert not int8.passed and int8.agreement is None and "no classes to agree on" in int8.failures[0]
    floats = check_parity(reference, {"y": reference["y"] + 1e-6}, FLOAT_TOLERANCE, variant="f")
    assert floats.passed and floats.agreement is None


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_a_non_finite_reference_fails_loudly(bad):
    reference = REF.copy()
    reference[1, 1] = bad  # at the row's argmax: agreement holds, and NaN or inf never breaks a bound it is part of
    result = check_parity({"logits": reference}, {"logits": REF}, FLOAT_TOLERANCE, variant="v", reference_name="eager")
    assert not result.passed
    assert any("reference eager's output 'logits' has 1 non-finite values" in f for f in result.failures), result.failures


def test_a_partial_tolerance_override_keeps_the_rest_of_the_variants_tolerance(scratch_repository, tmp_path):
    from crossdeploy.pipeline import load_tolerances

    overrides = tmp_path / "overrides.toml"
    overrides.write_text('["torch-onnx"]\nrtol = 0.0\n["torch-export"]\nmin_agreement = 0.5\n')
    run = run_parity(scratch_repository, ["torch-onnx", "torch-export"], 1, load_tolerances(overrides), write=False)
    tolerances = {v.config.name: v.result.tolerance for v in run.variants}
    assert tolerances["torch-onnx"] == Tolerance(atol=FLOAT_TOLERANCE.atol, rtol=0.0, min_agreement=1.0)
    assert tolerances["torch-export"] == FLOAT_TOLERANCE.overridden({"min_agreement": 0.5})
    assert tolerances["torch-export"].atol is not None  # values are still compared


def test_an_override_for_a_variant_the_repository_lacks_is_refused(scratch_repository):
    with pytest.raises(CrossdeployError, match="torch-onxx"):
        run_parity(scratch_repository, ["torch-onnx"], 1, {"torch-onxx": {"atol": 1e-3}}, write=False)

"""The command line: help for each command, one-line errors with a non-zero exit, tolerance overrides."""

import subprocess
import sys

import pytest


def crossdeploy(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "crossdeploy.cli", *args], capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("command", ["train", "export", "parity", "pipeline", "serve", "digest"])
def test_help(command):
    proc = crossdeploy(command, "--help")
    assert proc.returncode == 0 and "--repository" in proc.stdout or "--workdir" in proc.stdout


def one_line_error(proc, *fragments):
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert "Traceback" not in proc.stderr
    assert lines[-1].startswith("crossdeploy: error:"), proc.stderr
    for fragment in fragments:
        assert fragment in lines[-1]


def test_missing_repository(tmp_path):
    one_line_error(crossdeploy("parity", "--repository", str(tmp_path / "nowhere"), "--workdir", str(tmp_path)),
                   "nowhere", "does not exist")


def test_export_without_training(tmp_path):
    one_line_error(crossdeploy("export", "--repository", str(tmp_path / "r"), "--workdir", str(tmp_path)),
                   "torch_cnn.pt", "crossdeploy train")


def test_unknown_variant(tmp_path, repository):
    one_line_error(crossdeploy("parity", "--repository", str(repository.root), "--workdir", str(tmp_path), "-v", "torch-nope"),
                   "torch-nope")


def test_config_that_does_not_parse(scratch_repository, tmp_path):
    (scratch_repository.root / "keras-tflite" / "config.json").write_text("{]")
    one_line_error(crossdeploy("parity", "--repository", str(scratch_repository.root), "--workdir", str(tmp_path)),
                   "keras-tflite", "config.json")


def test_tolerance_override_makes_a_passing_variant_fail(scratch_repository, tmp_path):
    overrides = tmp_path / "tight.toml"
    overrides.write_text('["torch-tflite"]\natol = 1e-9\nrtol = 0.0\n')
    proc = crossdeploy("parity", "--repository", str(scratch_repository.root), "--workdir", str(tmp_path),
                       "-v", "torch-tflite", "--tolerances", str(overrides))
    one_line_error(proc, "torch-tflite", "atol 1e-09")
    bad = tmp_path / "bad.toml"
    bad.write_text("not = [toml")
    one_line_error(crossdeploy("parity", "--repository", str(scratch_repository.root), "--workdir", str(tmp_path),
                               "--tolerances", str(bad)), "bad.toml")


def test_the_frameworks_output_goes_to_the_log_and_a_failure_names_it(scratch_repository, tmp_path):
    overrides = tmp_path / "tight.toml"
    overrides.write_text('["torch-tflite"]\natol = 1e-9\nrtol = 0.0\n')
    proc = crossdeploy("parity", "--repository", str(scratch_repository.root), "--workdir", str(tmp_path),
                       "-v", "torch-tflite", "--tolerances", str(overrides))
    log = tmp_path / "logs" / "parity.log"
    one_line_error(proc, "torch-tflite", f"(framework output: {log})")
    assert "torch-tflite" in proc.stdout  # our table stays on the terminal
    chatter = [line for line in log.read_text().splitlines() if line.strip()]
    assert chatter  # LiteRT's XNNPACK delegate, torch's and absl's logging: never ours to show
    terminal = proc.stdout + proc.stderr
    assert [line for line in chatter if line in terminal] == []


def test_an_error_in_the_users_input_does_not_point_at_the_log(tmp_path):
    proc = crossdeploy("parity", "--repository", str(tmp_path / "nowhere"), "--workdir", str(tmp_path))
    one_line_error(proc, "nowhere")
    assert "framework output" not in proc.stderr


def test_a_tolerance_override_naming_no_variant_is_refused(repository, tmp_path):
    overrides = tmp_path / "typo.toml"
    overrides.write_text('["torch-tfilte"]\natol = 1e-3\n')
    one_line_error(crossdeploy("parity", "--repository", str(repository.root), "--workdir", str(tmp_path),
                               "-v", "torch-onnx", "--tolerances", str(overrides)), "torch-tfilte")
    unknown_field = tmp_path / "field.toml"
    unknown_field.write_text('["torch-onnx"]\natl = 1e-3\n')
    one_line_error(crossdeploy("parity", "--repository", str(repository.root), "--workdir", str(tmp_path),
                               "-v", "torch-onnx", "--tolerances", str(unknown_field)), "field.toml")

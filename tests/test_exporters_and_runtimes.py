"""Every pathway exported for real, and every runtime adapter round-tripping its artifact."""

import numpy as np
import pytest

from crossdeploy.errors import ArtifactError, InvalidInput
from crossdeploy.export.pathways import PATHWAYS
from crossdeploy.repository import sha256_of
from crossdeploy.models.data import load_split
from crossdeploy.runtimes import REGISTRY, open_runtime

NAMES = [p.name for p in PATHWAYS]
FILES = {"torch-eager": "model.pt", "torchscript": "model.pt", "torch-export": "model.pt2", "aoti": "model.pt2",
         "executorch": "model.pte", "onnx": "model.onnx", "savedmodel": "model.savedmodel/saved_model.pb",
         "tflite": "model.tflite", "keras": "model.keras"}


def test_all_fifteen_pathways_are_in_the_repository(repository):
    assert len(NAMES) == 15
    assert repository.names() == sorted(NAMES)
    assert {p.format for p in PATHWAYS} == set(REGISTRY)  # every adapter is used, every format has one


@pytest.mark.parametrize("name", NAMES)
def test_layout_and_config(repository, name):
    config, record = repository.get(name)
    folder = repository.version_dir(name, record.version)
    assert folder.parent.name == name and folder.name.isdigit()
    assert (folder / FILES[config.format]).is_file()
    for f in record.files:
        assert sha256_of(folder / f.path) == f.sha256 and (folder / f.path).stat().st_size == f.size
    assert [s.name for s in config.inputs] == ["image"] and list(config.inputs[0].shape) == [-1, 8, 8]
    assert [s.name for s in config.outputs] == ["logits"] and list(config.outputs[0].shape) == [-1, 10]
    assert config.pathway == name  # the built-in digits-cnn variants are named by their pathway key
    assert config.toolchain[0].tool in ("torch", "tf_keras") and all(step.version for step in config.toolchain)
    assert config.support.status and config.support.note
    assert config.runtime.version != "not installed"


@pytest.mark.parametrize("name", NAMES)
def test_runtime_round_trip_keeps_the_batch_dynamic(repository, name):
    x = np.array(load_split(0).x_test[:64])
    runtime = open_runtime(repository, name).load()
    try:
        full = runtime.predict({"image": x})["logits"]
        assert full.shape == (64, 10) and full.dtype == np.float32 and np.isfinite(full).all()
        for batch in (1, 7, 16):  # 16 crosses ExecuTorch's XNNPACK cap of 15
            part = runtime.predict({"image": x[:batch]})["logits"]
            assert part.shape == (batch, 10)
            np.testing.assert_allclose(part, full[:batch], atol=1e-5, rtol=1e-5)
    finally:
        runtime.unload()


def test_batch_cap_is_recorded_where_a_converter_fixes_it(repository):
    config, _ = repository.get("torch-executorch")
    assert config.max_batch == 15 and "splits" in config.batch_note
    assert all(repository.get(n)[0].max_batch is None for n in NAMES if n != "torch-executorch")


@pytest.mark.parametrize("engine", [None, "openvino"])  # OpenVINO reads the same file: the same check first
def test_corrupted_artifact_is_refused_naming_variant_and_file(scratch_repository, engine):
    config, record = scratch_repository.get("torch-onnx")
    path = scratch_repository.version_dir("torch-onnx", record.version) / "model.onnx"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match=r"torch-onnx: .*model\.onnx: sha256 mismatch"):
        open_runtime(scratch_repository, "torch-onnx", runtime=engine).load()
    path.unlink()
    with pytest.raises(ArtifactError, match=r"torch-onnx: .*model\.onnx: artifact file is missing"):
        open_runtime(scratch_repository, "torch-onnx", runtime=engine).load()


def test_adapters_reject_input_outside_the_contract(repository):
    runtime = open_runtime(repository, "keras-tflite").load()
    x = np.array(load_split(0).x_test[:2])
    with pytest.raises(InvalidInput, match="FP32"):
        runtime.predict({"image": x.astype(np.float64)})
    with pytest.raises(InvalidInput, match=r"\[-1, 8, 8\]"):
        runtime.predict({"image": x.reshape(2, 64)})
    with pytest.raises(InvalidInput, match="expects inputs"):
        runtime.predict({"pixels": x})
    with pytest.raises(InvalidInput, match="empty batch"):
        runtime.predict({"image": x[:0]})
    assert runtime.predict({"image": x})["logits"].shape == (2, 10)  # still serving after bad input


def test_rerunning_the_export_adds_versions_only_for_changed_bytes(workdir, scratch_repository):
    from crossdeploy.pipeline import export_in_fresh_process

    before = {n: scratch_repository.get(n)[1].version for n in NAMES}
    export_in_fresh_process(repository=scratch_repository.root, workdir=workdir)
    after = {n: scratch_repository.get(n)[1].version for n in NAMES}
    # AOTInductor packages carry a random serialization id (recorded in the variant's notes)
    assert after["torch-aoti"] == before["torch-aoti"] + 1
    assert "random serialization id" in " ".join(scratch_repository.get("torch-aoti")[0].notes)
    assert {n: v for n, v in after.items() if n != "torch-aoti"} == {n: v for n, v in before.items() if n != "torch-aoti"}
    for name in NAMES:
        assert len(scratch_repository.get(name)[0].versions) <= 2

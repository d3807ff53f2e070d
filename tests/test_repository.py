"""The repository alone: layout, versioning, pruning, atomicity and loud failures (no frameworks)."""

import json
from datetime import datetime, timezone

import pytest

from crossdeploy.errors import ConfigError, ModelNotFound, RepositoryError
from crossdeploy.repository import ModelRepository, Support, ToolStep, VariantConfig, sha256_of
from crossdeploy.export.spec import DIGITS
from crossdeploy.repository import FLOAT_TOLERANCE


def template(name="toy"):
    return VariantConfig(
        name=name, model="toy", format="onnx", runtime=ToolStep(tool="onnxruntime", version="x"),
        source_framework="pytorch", precision="fp32", pathway="torch-eager", toolchain=[ToolStep(tool="torch", version="x")],
        support=Support(status="active", note="test"), inputs=list(DIGITS.inputs), outputs=list(DIGITS.outputs),
        dynamic_batch=True, tolerance=FLOAT_TOLERANCE,
    )


def stage(repo, payload: bytes, name="toy"):
    folder = repo.staging_dir(name)
    (folder / "model.onnx").write_bytes(payload)
    return folder


def test_versions_are_added_only_when_bytes_change_and_pruned(tmp_path):
    repo = ModelRepository(tmp_path / "repo", keep_versions=2)
    first, added = repo.add(template(), stage(repo, b"one"))
    assert (first.version, added) == (1, True)
    same, added = repo.add(template(), stage(repo, b"one"))
    assert (same.version, added) == (1, False)
    repo.add(template(), stage(repo, b"two"))
    third, _ = repo.add(template(), stage(repo, b"three"))
    assert third.version == 3
    assert sorted(p.name for p in (tmp_path / "repo" / "toy").iterdir()) == ["2", "3", "config.json"]
    config, record = repo.get("toy")
    assert [v.version for v in config.versions] == [2, 3] and record.version == 3
    assert record.files[0].sha256 == sha256_of(tmp_path / "repo/toy/3/model.onnx") and record.files[0].size == 5
    assert repo.get("toy", 2)[1].version == 2
    assert not list((tmp_path / "repo" / ".staging").iterdir())  # staging emptied by the moves
    with pytest.raises(ModelNotFound):
        repo.get("toy", 1)  # pruned
    with pytest.raises(ModelNotFound):
        repo.get("nope")


def test_missing_repository_and_malformed_configs_fail_loudly(tmp_path):
    with pytest.raises(RepositoryError, match="does not exist"):
        ModelRepository(tmp_path / "absent").list()
    repo = ModelRepository(tmp_path / "repo")
    repo.add(template(), stage(repo, b"x"))
    path = tmp_path / "repo" / "toy" / "config.json"
    path.write_text("{not json")
    with pytest.raises(ConfigError, match=r"toy/config.json.*'toy'"):
        repo.list()
    data = template().model_dump(mode="json")
    del data["format"]
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="format"):
        repo.config("toy")
    (tmp_path / "repo" / "orphan").mkdir()
    with pytest.raises(ConfigError, match="orphan.*no config.json"):
        repo.config("orphan")


def test_parity_is_recorded_per_version(tmp_path):
    from crossdeploy.export.parity import check_parity
    import numpy as np

    repo = ModelRepository(tmp_path / "repo")
    repo.add(template(), stage(repo, b"x"))
    logits = np.ones((4, 10), np.float32)
    result = check_parity({"logits": logits}, {"logits": logits}, FLOAT_TOLERANCE)
    repo.set_parity("toy", 1, result)
    assert repo.get("toy")[1].parity.passed
    assert repo.get("toy")[1].parity.checked_at <= datetime.now(timezone.utc)


@pytest.mark.parametrize("path,reason", [("../other/model.onnx", r"leaves the version folder \('\.\.'\)"),
                                         ("/etc/passwd", "is absolute"), ("a/../../b", "leaves the version folder"),
                                         ("", "non-empty")])
def test_a_config_naming_a_file_outside_its_version_folder_does_not_validate(tmp_path, path, reason):
    repo = ModelRepository(tmp_path / "repo")
    repo.add(template(), stage(repo, b"x"))
    config = tmp_path / "repo" / "toy" / "config.json"
    data = json.loads(config.read_text())
    data["versions"][0]["files"][0]["path"] = path
    config.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=rf"'toy': versions\.0\.files\.0\.path: .*{reason}"):
        repo.config("toy")


def test_a_version_folder_or_file_leading_out_by_symlink_is_refused(tmp_path):
    repo = ModelRepository(tmp_path / "repo")
    repo.add(template(), stage(repo, b"x"))
    artifact = tmp_path / "repo" / "toy" / "1" / "model.onnx"
    (tmp_path / "outside.onnx").write_bytes(b"x")
    artifact.unlink()
    artifact.symlink_to(tmp_path / "outside.onnx")
    with pytest.raises(ConfigError, match="file 'model.onnx' of version 1 leads out of its version folder"):
        repo.config("toy")
    artifact.unlink()
    artifact.symlink_to("../1/../1/other.onnx")  # a symlink that stays inside is fine
    assert repo.config("toy").name == "toy"
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "repo" / "toy" / "1").rename(tmp_path / "elsewhere" / "1")
    (tmp_path / "repo" / "toy" / "1").symlink_to(tmp_path / "elsewhere" / "1")
    with pytest.raises(ConfigError, match="version 1's folder leads out of the repository"):
        repo.config("toy")


def test_an_entry_is_a_module_and_a_function_never_a_path(tmp_path):
    for entry in ("/tmp/evil.py:build", "./evil:build", "pkg.mod", "../x:build", "os:system; rm", "a/b:c"):
        with pytest.raises(ValueError, match="must be 'module:function'"):
            VariantConfig.model_validate({**template().model_dump(), "entry": entry})
    assert VariantConfig.model_validate({**template().model_dump(), "entry": "pkg.mod:build"}).entry == "pkg.mod:build"


def test_a_sealed_repository_takes_model_code_only_from_the_version_or_crossdeploy(tmp_path):
    repo = ModelRepository(tmp_path / "repo")
    repo.add(template().model_copy(update={"entry": "json:loads"}), stage(repo, b"x"))
    sealed = ModelRepository(tmp_path / "repo", sealed=True)
    assert repo.config("toy").entry == "json:loads"  # the matrix's own scratch repositories are not sealed
    with pytest.raises(ConfigError, match="entry module 'json' is neither in the crossdeploy package nor a file of version 1"):
        sealed.config("toy")
    staged = stage(repo, b"y")
    (staged / "factory.py").write_text("def build():\n    return None\n")
    repo.add(template().model_copy(update={"entry": "factory:build"}), staged)  # version 2 carries it, 1 does not
    with pytest.raises(ConfigError, match="entry module 'factory' is neither .* nor a file of version 1"):
        sealed.config("toy")
    repo.add(template().model_copy(update={"entry": "factory:build"}), staged_with_factory(repo))
    assert sealed.config("toy").entry == "factory:build"  # versions 2 and 3 both carry factory.py
    repo.add(template().model_copy(update={"entry": "crossdeploy.models.torch_cnn:build"}), stage(repo, b"w"))
    assert sealed.config("toy").entry.startswith("crossdeploy.")


def test_a_sealed_repository_refuses_a_file_its_config_does_not_list(tmp_path):
    repo = ModelRepository(tmp_path / "repo")
    repo.add(template(), stage(repo, b"x"))
    sealed = ModelRepository(tmp_path / "repo", sealed=True)
    assert sealed.config("toy").name == "toy"
    (tmp_path / "repo" / "toy" / "1" / "variables").mkdir()
    (tmp_path / "repo" / "toy" / "1" / "variables" / "extra.index").write_bytes(b"?")  # what a SavedModel would read
    with pytest.raises(ConfigError, match="version 1 holds a file its config does not list: 'variables/extra.index'"):
        sealed.config("toy")


def staged_with_factory(repo):
    staged = stage(repo, b"z")
    (staged / "factory.py").write_text("def build():\n    return 1\n")
    return staged


def test_the_repository_digest_covers_every_config_and_ignores_formatting(tmp_path):
    repo = ModelRepository(tmp_path / "repo")
    repo.add(template(), stage(repo, b"x"))
    repo.add(template("other"), stage(repo, b"y", "other"))
    digest = repo.digest()
    assert len(digest) == 64 and digest == ModelRepository(tmp_path / "repo").digest()
    config = tmp_path / "repo" / "toy" / "config.json"
    config.write_text(json.dumps(json.loads(config.read_text()), indent=7))  # the same config, laid out otherwise
    assert repo.digest() == digest
    data = json.loads(config.read_text())
    data["versions"][0]["files"][0]["sha256"] = "0" * 64  # one file digest
    config.write_text(json.dumps(data))
    assert repo.digest() != digest
    data["versions"][0]["files"][0]["sha256"] = sha256_of(tmp_path / "repo" / "toy" / "1" / "model.onnx")
    config.write_text(json.dumps(data))
    assert repo.digest() == digest
    (tmp_path / "repo" / "third").mkdir()  # a variant folder more, even without a config
    assert repo.digest() != digest
    pinned = ModelRepository(tmp_path / "repo", pinned=repo.digests())
    assert pinned.config("toy").name == "toy"
    config.write_text(json.dumps({**data, "notes": ["changed"]}))
    with pytest.raises(ConfigError, match="not the one the pinned repository digest covers"):
        pinned.config("toy")

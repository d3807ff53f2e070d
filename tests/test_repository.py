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

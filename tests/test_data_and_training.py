import numpy as np
import pytest

from crossdeploy.models.data import load_split
from crossdeploy.models.train import BUILTINS, load_keras, load_torch, train_torch


def test_split_is_stratified_seeded_and_raw():
    split = load_split(0)
    assert split.x_train.shape[1:] == (8, 8) and split.x_test.shape[1:] == (8, 8)
    assert len(split.x_train) + len(split.x_test) == 1797
    assert split.x_train.dtype == np.float32 and split.x_train.min() == 0 and split.x_train.max() == 16
    train_share = np.bincount(split.y_train) / len(split.y_train)
    test_share = np.bincount(split.y_test) / len(split.y_test)
    assert np.abs(train_share - test_share).max() < 0.01
    again = load_split.__wrapped__(0)
    assert np.array_equal(again.x_test, split.x_test) and np.array_equal(again.y_test, split.y_test)
    assert not np.array_equal(load_split.__wrapped__(1).y_test, split.y_test)


@pytest.mark.parametrize("builtin", BUILTINS, ids=[f"{b.model}-{b.framework}" for b in BUILTINS])
def test_every_builtin_model_reaches_the_accuracy_bar(workdir, builtin):
    """The CNNs reach 95 %; so does the transformer (a real accuracy, not a smoke test), in both frameworks."""
    split = load_split(0)
    x = np.array(split.x_test)
    if builtin.framework == "pytorch":
        import torch

        with torch.no_grad():
            predicted = load_torch(workdir / "trained" / builtin.weights, builtin)(torch.from_numpy(x)).argmax(1).numpy()
    else:
        predicted = load_keras(workdir / "trained" / builtin.weights, builtin)(x, training=False).numpy().argmax(1)
    assert (predicted == split.y_test).mean() >= 0.95


def test_torch_training_is_deterministic(tmp_path):
    import torch

    first = train_torch(tmp_path / "a", epochs=2, seed=0)
    second = train_torch(tmp_path / "b", epochs=2, seed=0)
    a = torch.load(first.path, weights_only=True)
    b = torch.load(second.path, weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert first.test_accuracy == pytest.approx(second.test_accuracy)
    assert first.test_accuracy > 0.5  # 10 classes: chance is 0.1

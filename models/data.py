"""scikit-learn's digits: 1,797 8x8 images, raw intensities 0..16, shipped inside the package (no download).

One fixed, seeded, stratified split shared by both frameworks. Images stay raw (float32, 0..16, shape
[N, 8, 8]) because that is the serving contract: scaling happens inside each model graph.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

TEST_FRACTION = 0.2


@dataclass(frozen=True)
class Split:
    x_train: np.ndarray  # float32 [N, 8, 8], 0..16
    y_train: np.ndarray  # int64 [N]
    x_test: np.ndarray
    y_test: np.ndarray


@lru_cache(maxsize=4)
def load_split(seed: int = 0) -> Split:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = digits.images.astype(np.float32)
    labels = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        images, labels, test_size=TEST_FRACTION, stratify=labels, random_state=seed
    )
    for array in (x_train, x_test, y_train, y_test):
        array.setflags(write=False)
    return Split(x_train, y_train, x_test, y_test)


def calibration_batch(seed: int = 0, count: int = 200) -> np.ndarray:
    """A deterministic slice of the training split for int8 calibration (never the test split)."""
    return np.ascontiguousarray(load_split(seed).x_train[:count])


def test_samples() -> tuple[np.ndarray, np.ndarray]:
    """The built-in specs' samples: the seed-0 test split (images, labels)."""
    split = load_split(0)
    return np.array(split.x_test), np.array(split.y_test)


def calibration_samples() -> np.ndarray:
    """The built-in specs' int8 calibration inputs: 200 training images (seed-0 split)."""
    return calibration_batch(0)

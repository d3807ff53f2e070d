"""Two recurrent digits classifiers no converter here was tuned for: each 8x8 digit image read as a sequence of
8 rows of 8 pixels. A PyTorch LSTM and a Keras (tf_keras) GRU, 32 units, the last hidden state into 10 logits.

`python docs/examples/recurrent/recurrent_models.py [WORKDIR]` trains both in seconds (scikit-learn's digits,
bundled, no download) and writes their weights to WORKDIR/trained/ (default: build/), where lstm.toml and
gru.toml read them. The module stands alone (one file, absolute imports) so `--register` can carry it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

PIXEL_MAX, UNITS, CLASSES = 16.0, 32, 10
LSTM_WEIGHTS, GRU_WEIGHTS = "trained/recurrent-lstm.pt", "trained/recurrent-gru.weights.h5"


def lstm():
    """PyTorch: nn.LSTM over the 8 rows (batch_first), its last hidden state into a Linear layer."""
    import torch
    from torch import nn

    class RowLSTM(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = nn.LSTM(8, UNITS, batch_first=True)
            self.head = nn.Linear(UNITS, CLASSES)

        def forward(self, image):
            _, (hidden, _) = self.lstm(image / PIXEL_MAX)
            return self.head(hidden[-1])

    torch.manual_seed(0)
    return RowLSTM()


def gru():
    """Keras 2 (tf_keras): GRU over the 8 rows, its last state into a Dense layer."""
    import tf_keras as keras

    inputs = keras.Input((8, 8), name="image")
    x = keras.layers.Rescaling(1.0 / PIXEL_MAX)(inputs)
    x = keras.layers.GRU(UNITS)(x)
    return keras.Model(inputs, keras.layers.Dense(CLASSES, name="logits")(x), name="digits_gru")


def _train_lstm(x: np.ndarray, y: np.ndarray, path: Path, epochs: int) -> None:
    import torch

    torch.manual_seed(0)
    model = lstm()
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    images, labels = torch.from_numpy(x), torch.from_numpy(y)
    for _ in range(epochs):
        order = torch.randperm(len(images))
        for start in range(0, len(images), 64):
            batch = order[start : start + 64]
            optimiser.zero_grad()
            torch.nn.functional.cross_entropy(model(images[batch]), labels[batch]).backward()
            optimiser.step()
    torch.save(model.state_dict(), path)


def _train_gru(x: np.ndarray, y: np.ndarray, path: Path, epochs: int) -> None:
    import tf_keras as keras

    keras.utils.set_random_seed(0)
    model = gru()
    model.compile(optimizer=keras.optimizers.Adam(1e-2),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, batch_size=64, epochs=epochs, verbose=0)
    model.save_weights(str(path))


def train(workdir: Path | str = "build", epochs: int = 12) -> tuple[Path, Path]:
    """Trains both models on the digits training split (seed 0, the split the built-in specs test on)."""
    from crossdeploy.models.data import load_split

    split = load_split(0)
    folder = Path(workdir) / "trained"
    folder.mkdir(parents=True, exist_ok=True)
    lstm_path, gru_path = Path(workdir) / LSTM_WEIGHTS, Path(workdir) / GRU_WEIGHTS
    _train_lstm(np.array(split.x_train), np.array(split.y_train), lstm_path, epochs)
    _train_gru(np.array(split.x_train), np.array(split.y_train), gru_path, epochs)
    return lstm_path, gru_path


if __name__ == "__main__":
    for written in train(sys.argv[1] if len(sys.argv) > 1 else "build"):
        print(f"wrote {written}")

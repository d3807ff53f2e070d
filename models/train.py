"""Seeded, deterministic training of the built-in models (the digits CNN and the digits transformer, each in
PyTorch and in Keras) on the shared split, with a progress bar. The weights land where the built-in model specs
(models/specs/*.toml) read them: `<workdir>/trained/<file>`."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from .data import load_split

BATCH_SIZE = 32
LEARNING_RATE = 1e-3


@dataclass(frozen=True)
class Builtin:
    model: str  # the model name in its spec
    framework: str  # "pytorch" | "keras"
    builder: str  # module inside crossdeploy.models with a build() function
    weights: str  # file name under <workdir>/trained/ (a state_dict, or Keras .weights.h5)


BUILTINS = (
    Builtin("digits-cnn", "pytorch", "torch_cnn", "torch_cnn.pt"),
    Builtin("digits-cnn", "keras", "keras_cnn", "keras_cnn.weights.h5"),
    Builtin("digits-transformer", "pytorch", "torch_transformer", "torch_transformer.pt"),
    Builtin("digits-transformer", "keras", "keras_transformer", "keras_transformer.weights.h5"),
)
TORCH_WEIGHTS = BUILTINS[0].weights
KERAS_WEIGHTS = BUILTINS[1].weights


def _builder(builtin: Builtin):
    import importlib

    return importlib.import_module(f"crossdeploy.models.{builtin.builder}").build


@dataclass(frozen=True)
class TrainResult:
    model: str
    framework: str
    path: Path
    test_accuracy: float
    epochs: int
    seconds: float


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"), TimeElapsedColumn(), transient=False,
    )


def train_torch(out_dir: Path, epochs: int, seed: int = 0, builtin: Builtin = BUILTINS[0]) -> TrainResult:
    import torch

    build = _builder(builtin)
    start = time.perf_counter()
    split = load_split(seed)
    torch.manual_seed(seed)
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)  # restored below: exporters later in the process must not see it
    model = build()
    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    loss_fn = torch.nn.CrossEntropyLoss()
    x = torch.from_numpy(np.array(split.x_train))
    y = torch.from_numpy(np.array(split.y_train))
    generator = torch.Generator().manual_seed(seed)
    with _progress() as progress:
        task = progress.add_task(f"train {builtin.model} (PyTorch)", total=epochs, status="")
        for _ in range(epochs):
            model.train()
            order = torch.randperm(len(x), generator=generator)
            total = 0.0
            for i in range(0, len(x), BATCH_SIZE):
                idx = order[i : i + BATCH_SIZE]
                optimizer.zero_grad()
                loss = loss_fn(model(x[idx]), y[idx])
                loss.backward()
                optimizer.step()
                total += loss.item() * len(idx)
            progress.update(task, advance=1, status=f"loss {total / len(x):.4f}")
    torch.use_deterministic_algorithms(was_deterministic)
    model.eval()
    with torch.no_grad():
        predicted = model(torch.from_numpy(np.array(split.x_test))).argmax(1).numpy()
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / builtin.weights
    torch.save(model.state_dict(), path)
    accuracy = float((predicted == split.y_test).mean())
    return TrainResult(builtin.model, "pytorch", path, accuracy, epochs, time.perf_counter() - start)


def train_keras(out_dir: Path, epochs: int, seed: int = 0, builtin: Builtin = BUILTINS[1]) -> TrainResult:
    import tf_keras as keras
    from tensorflow.python.framework import config as tf_config

    build = _builder(builtin)
    start = time.perf_counter()
    split = load_split(seed)
    keras.utils.set_random_seed(seed)
    tf_config.enable_op_determinism()
    model = build()
    model.compile(
        optimizer=keras.optimizers.Adam(LEARNING_RATE),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    with _progress() as progress:
        task = progress.add_task(f"train {builtin.model} (Keras)  ", total=epochs, status="")

        class _Report(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                progress.update(task, advance=1, status=f"loss {logs['loss']:.4f}")

        model.fit(
            np.array(split.x_train), np.array(split.y_train), batch_size=BATCH_SIZE, epochs=epochs,
            shuffle=True, verbose=0, callbacks=[_Report()],
        )
    tf_config.disable_op_determinism()  # exporters later in the process must not see it (no public API)
    logits = model.predict(np.array(split.x_test), verbose=0)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / builtin.weights
    model.save_weights(path)
    accuracy = float((logits.argmax(1) == split.y_test).mean())
    return TrainResult(builtin.model, "keras", path, accuracy, epochs, time.perf_counter() - start)


def train_builtin(builtin: Builtin, out_dir: Path, epochs: int, seed: int = 0) -> TrainResult:
    trainer = train_torch if builtin.framework == "pytorch" else train_keras
    return trainer(out_dir, epochs, seed, builtin)


def load_torch(path: Path, builtin: Builtin = BUILTINS[0]):
    """A trained built-in PyTorch model, eval mode, from a state_dict loaded with weights_only=True."""
    import torch

    model = _builder(builtin)()
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model.eval()


def load_keras(path: Path, builtin: Builtin = BUILTINS[1]):
    model = _builder(builtin)()
    model.load_weights(str(path))
    return model

"""The same digits CNN in Keras 2 (tf_keras). BatchNorm uses PyTorch's defaults (momentum 0.9, eps 1e-5)."""

from __future__ import annotations

PIXEL_MAX = 16.0


def build():
    import tf_keras as keras
    from tf_keras import layers

    def bn():
        return layers.BatchNormalization(momentum=0.9, epsilon=1e-5)

    inputs = keras.Input(shape=(8, 8), name="image", dtype="float32")
    x = layers.Rescaling(1.0 / PIXEL_MAX)(inputs)
    x = layers.Reshape((8, 8, 1))(x)
    x = layers.Conv2D(16, 3, padding="same")(x)
    x = layers.ReLU()(bn()(x))
    x = layers.Conv2D(32, 3, padding="same")(x)
    x = layers.ReLU()(bn()(x))
    x = layers.MaxPooling2D(2)(x)
    x = layers.Flatten()(x)
    x = layers.Dense(64, activation="relu")(x)
    logits = layers.Dense(10, name="logits")(x)
    return keras.Model(inputs, logits, name="digits_cnn")

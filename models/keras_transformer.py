"""The digits transformer in Keras 2 (tf_keras): the same shape as models/torch_transformer.py — rows as tokens,
a learned position embedding, two pre-norm encoder blocks (MultiHeadAttention, LayerNormalization eps 1e-5, exact
GELU), mean pooling, 10 logits. Weights differ from the PyTorch one (trained separately)."""

from __future__ import annotations

import tf_keras as keras
from tf_keras import layers

PIXEL_MAX = 16.0
TOKENS, WIDTH, HEADS, LAYERS, FEEDFORWARD = 8, 32, 4, 2, 64


@keras.saving.register_keras_serializable(package="crossdeploy")
class PositionEmbedding(layers.Layer):
    """Adds a learned [tokens, width] table; registered so a saved .keras file loads where this module is
    imported (the keras-eager config names this module as its `entry`)."""

    def build(self, input_shape):
        self.table = self.add_weight(name="table", shape=(1, int(input_shape[1]), int(input_shape[2])),
                                     initializer=keras.initializers.RandomNormal(stddev=0.02))

    def call(self, tokens):
        return tokens + self.table


def build():
    inputs = keras.Input(shape=(TOKENS, 8), name="image", dtype="float32")
    x = layers.Rescaling(1.0 / PIXEL_MAX)(inputs)
    x = PositionEmbedding()(layers.Dense(WIDTH)(x))
    for _ in range(LAYERS):
        h = layers.LayerNormalization(epsilon=1e-5)(x)
        x = layers.Add()([x, layers.MultiHeadAttention(HEADS, WIDTH // HEADS)(h, h)])
        h = layers.LayerNormalization(epsilon=1e-5)(x)
        h = layers.Dense(FEEDFORWARD, activation="gelu")(h)
        x = layers.Add()([x, layers.Dense(WIDTH)(h)])
    x = layers.GlobalAveragePooling1D()(layers.LayerNormalization(epsilon=1e-5)(x))
    logits = layers.Dense(10, name="logits")(x)
    return keras.Model(inputs, logits, name="digits_transformer")

"""The digits transformer in PyTorch: the 8 image rows as 8 tokens through a pre-norm encoder (multi-head
attention, LayerNorm, GELU, softmax inside attention), mean-pooled into 10 logits. It exists to stress the
converters where the CNN does not: attention reshapes, LayerNorm, erf-GELU, batch-dependent matmuls."""

from __future__ import annotations

import torch
from torch import nn

PIXEL_MAX = 16.0
TOKENS, WIDTH, HEADS, LAYERS, FEEDFORWARD = 8, 32, 4, 2, 64


class DigitsTransformer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(8, WIDTH)  # one row of 8 pixels -> one token
        self.position = nn.Parameter(torch.randn(1, TOKENS, WIDTH) * 0.02)
        layer = nn.TransformerEncoderLayer(WIDTH, HEADS, FEEDFORWARD, dropout=0.0, activation="gelu",
                                           batch_first=True, norm_first=True, layer_norm_eps=1e-5)
        self.encoder = nn.TransformerEncoder(layer, LAYERS, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(WIDTH, eps=1e-5)
        self.head = nn.Linear(WIDTH, 10)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        tokens = self.embed(image / PIXEL_MAX) + self.position  # [N, 8 rows, WIDTH]
        return self.head(self.norm(self.encoder(tokens)).mean(dim=1))


def build() -> DigitsTransformer:
    return DigitsTransformer()

"""The digits CNN in PyTorch. Input: raw [N, 8, 8] in 0..16; the graph scales and adds the channel axis."""

from __future__ import annotations

import torch
from torch import nn

PIXEL_MAX = 16.0


class DigitsCNN(nn.Module):
    """conv(16) -> BN -> ReLU -> conv(32) -> BN -> ReLU -> maxpool 2 -> dense 64 -> ReLU -> dense 10."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, kernel_size=3, padding=1),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.Conv2d(16, 32, kernel_size=3, padding=1),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(32 * 4 * 4, 64),
            nn.ReLU(),
            nn.Linear(64, 10),
        )

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = (image / PIXEL_MAX).unsqueeze(1)  # [N, 8, 8] raw -> [N, 1, 8, 8] in 0..1
        return self.classifier(self.features(x))


def build() -> DigitsCNN:
    return DigitsCNN()

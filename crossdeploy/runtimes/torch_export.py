"""A torch.export program (`.pt2`), run eagerly through its unlifted module."""

from __future__ import annotations

import torch

from . import _torch
from .base import Runtime


class ExportedProgramRuntime(Runtime):
    file = "model.pt2"

    def _load(self) -> None:
        self.model = torch.export.load(str(self.artifact)).module()

    def _run(self, inputs):
        return self._outputs(_torch.call(self.model, inputs, self.threads))

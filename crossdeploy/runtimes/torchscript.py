"""TorchScript (`torch.jit`), deprecated upstream in favour of torch.export but still what TorchServe serves."""

from __future__ import annotations

import torch

from . import _torch
from .base import Runtime


class TorchScriptRuntime(Runtime):
    file = "model.pt"

    def _load(self) -> None:
        self.model = torch.jit.load(str(self.artifact), map_location="cpu").eval()

    def _run(self, inputs):
        return self._outputs(_torch.call(self.model, inputs, self.threads))

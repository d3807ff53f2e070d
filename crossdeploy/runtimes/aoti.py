"""An AOTInductor package (`.pt2` holding a compiled shared library), run through aoti_load_package."""

from __future__ import annotations

import torch._inductor

from . import _torch
from .base import Runtime


class AOTInductorRuntime(Runtime):
    file = "model.pt2"

    def _load(self) -> None:
        self.model = torch._inductor.aoti_load_package(str(self.artifact))

    def _run(self, inputs):
        return self._outputs(_torch.call(self.model, inputs, self.threads))

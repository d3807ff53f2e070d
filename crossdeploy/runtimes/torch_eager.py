"""torch-eager: a state_dict plus the model code, loaded with weights_only=True (Flask-style serving)."""

from __future__ import annotations

import torch

from crossdeploy.errors import ArtifactError

from . import _torch
from ._entry import entry_function
from .base import Runtime


class TorchEagerRuntime(Runtime):
    file = "model.pt"

    def _load(self) -> None:
        if not self.config.entry:
            raise ArtifactError(self.name, str(self.directory), "config names no model code ('entry')")
        model = entry_function(self.config, self.version, self.directory)()
        model.load_state_dict(torch.load(self.artifact, map_location="cpu", weights_only=True))
        self.model = model.eval()

    def _run(self, inputs):
        return self._outputs(_torch.call(self.model, inputs, self.threads))

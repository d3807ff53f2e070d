"""ExecuTorch (`.pte`), PyTorch Mobile's successor, through its Python runtime bindings.

The XNNPACK delegate plans memory for a bounded batch; the config's max_batch makes the base class split
larger batches, so callers never see the cap.
"""

from __future__ import annotations

import torch
from executorch.runtime import Runtime as ExecuTorch

from .base import Runtime


class ExecuTorchRuntime(Runtime):
    file = "model.pte"

    def _load(self) -> None:
        # From bytes, not the path: a program loaded from a file is read from its mapping while it runs, so a
        # file rewritten in place while served would change (or, truncated, crash) the running model.
        # The program owns those bytes and the method runs from them: keep it as long as the method.
        self.program = ExecuTorch.get().load_program(self.artifact.read_bytes())
        self.method = self.program.load_method("forward")

    def _run(self, inputs):
        torch.set_num_threads(self.threads)
        outputs = self.method.execute([torch.from_numpy(a) for a in inputs.values()])
        return self._outputs([t.numpy() for t in outputs])

"""What the four PyTorch adapters share: numpy in, tensors through a callable under no_grad, numpy out."""

from __future__ import annotations

import numpy as np
import torch


def call(fn, arrays: dict[str, np.ndarray], threads: int) -> list[np.ndarray]:
    torch.set_num_threads(threads)
    with torch.inference_mode():
        result = fn(*[torch.from_numpy(a) for a in arrays.values()])
    if isinstance(result, torch.Tensor):
        result = [result]
    elif isinstance(result, dict):
        result = list(result.values())
    return [t.detach().numpy() for t in result]

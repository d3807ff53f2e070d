"""Converts a torch.export program (.pt2) to a .tflite with litert-torch, in the litert environment.

Run as `python litert_convert.py REQUEST.json RESPONSE.json`. Standalone on purpose: the environment has
torch and litert-torch but not crossdeploy, so this reads and writes the hand-off JSON itself.
Request: {"inputs": {"program": PT2}, "output_dir": DIR, "options": {"batch": N, "input_shapes": [[8, 8]]}}.
Response: {"outputs": {"model": TFLITE}, "versions": {...}, "notes": [...]}.
litert-torch takes no dynamic batch: the .tflite is traced at the request's fixed batch."""

from __future__ import annotations

import json
import sys
from importlib.metadata import version
from pathlib import Path


def convert(request: dict) -> dict:
    import litert_torch
    import torch

    options = request.get("options", {})
    batch = int(options.get("batch", 1))
    shapes = options["input_shapes"]  # per input, without the batch dimension
    program = torch.export.load(request["inputs"]["program"])
    sample = tuple(torch.randn(batch, *shape) for shape in shapes)
    edge = litert_torch.convert(program.module(), sample)
    out = Path(request["output_dir"]) / "model.tflite"
    edge.export(str(out))
    return {"outputs": {"model": str(out)},
            "versions": {name: version(name) for name in ("torch", "litert-torch", "ai-edge-litert")},
            "notes": [f"fixed batch {batch}: litert-torch converts no dynamic batch"]}


def main(argv: list[str]) -> int:
    request_file, response_file = argv[1], argv[2]
    response = convert(json.loads(Path(request_file).read_text()))
    Path(response_file).write_text(json.dumps(response, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

"""ONNX -> TensorFlow (SavedModel + TFLite) with onnx2tf: PyTorch into TensorFlow's deployment world.

onnx2tf rewrites its input .onnx in place, so it always gets a copy. It turns layouts channels-last inside
the graph and has to guess what a 3-D input means. Its own options settle the guess, and which one is right
depends on the model, so the converted SavedModel is checked against onnxruntime on the spec's example batch:
- `keep_shape_absolutely_input_names` first (right for the digits CNN, whose [N, 8, 8] input becomes NCHW);
- if the outputs disagree, `keep_ncw_or_nchw_or_ncdhw_input_names` (right for the digits transformer, whose
  8 rows are tokens: with the first option onnx2tf transposes the square input, and the shape hides it).
- `replace_to_pseudo_operators=["erf"]` when the graph has Erf (PyTorch's exact GELU): TFLite has no builtin
  Erf, and without it the .tflite needs the Flex delegate, which LiteRT's Python interpreter does not link.
Each workaround applied is written into the variant's notes and the matrix report.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import sys
from pathlib import Path

from crossdeploy.errors import ExportError
from crossdeploy.repository import ToolStep
from crossdeploy.versions import version_of

from ..context import ExportContext, Exported
from ..torch_exporters import TORCHSCRIPT_NOTE

SAVEDMODEL_FILES = ("saved_model.pb", "variables", "assets")  # not fingerprint.pb: a random uuid per save


def _converted(ctx: ExportContext, source: str, extra: dict | None = None) -> Path:
    """Runs onnx2tf once per source ONNX (and `extra` options: a remedy's flags); both the SavedModel and the
    TFLite pathway reuse the result."""
    key = _key(source, extra)
    if key in ctx.intermediates:
        return ctx.intermediates[key]
    import onnx2tf

    onnx_path = ctx.intermediates.get(source)
    if onnx_path is None:
        raise ExportError(source, "its ONNX file must be exported before onnx2tf can convert it")
    import onnx

    _onnxsim_on_path()
    names = [s.name for s in ctx.contract.inputs]
    options, notes = dict(extra or {}), []
    if any(node.op_type == "Erf" for node in onnx.load(str(onnx_path)).graph.node):
        options["replace_to_pseudo_operators"] = ["erf"]
        notes.append("onnx2tf replace_to_pseudo_operators=['erf']: TFLite has no builtin Erf (exact GELU); without it "
                     "the .tflite needs the Flex delegate")
    attempts = [("keep_shape_absolutely_input_names", None),
                ("keep_ncw_or_nchw_or_ncdhw_input_names",
                 "onnx2tf transposed the input with keep_shape_absolutely_input_names (outputs disagreed with "
                 "onnxruntime); converted again with keep_ncw_or_nchw_or_ncdhw_input_names")]
    errors: list[Exception] = []
    converted: list[int] = []
    for attempt, (layout, note) in enumerate(attempts):
        work = ctx.scratch / f"onnx2tf-{source}-{attempt}"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        copy = work / "input.onnx"
        shutil.copyfile(onnx_path, copy)
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                onnx2tf.convert(input_onnx_file_path=str(copy), output_folder_path=str(work / "out"), non_verbose=True,
                                **{layout: names}, **options)
            agrees = _agrees(work / "out", onnx_path, ctx, rows=options.get("batch_size"))
        except Exception as exc:  # this layout failed to convert or to run: the other one may not
            errors.append(exc)
            continue
        converted.append(attempt)
        if agrees:
            ctx.intermediates[key] = work / "out"
            ctx.workarounds[key] = notes + ([note] if note else [])
            return work / "out"
    if not converted:
        raise errors[0]  # onnx2tf's own error, under its default layout option
    # Neither layout reproduces the ONNX model: keep one that converted, and let parity report how far off it is.
    ctx.intermediates[key] = ctx.scratch / f"onnx2tf-{source}-{converted[0]}" / "out"
    ctx.workarounds[key] = notes + ["onnx2tf's outputs disagree with onnxruntime under both input-layout options"]
    return ctx.intermediates[key]


def _onnxsim_on_path() -> None:
    """onnx2tf simplifies its input by running the `onnxsim` command by name, and when that fails it only warns
    and converts the unsimplified graph: the digits CNN survives that, the transformer does not ("Cannot take the
    length of shape with unknown rank"). A venv that is not activated (`make test` runs .venv/bin/python) has
    onnxsim beside the interpreter but not on PATH, so that folder goes first on PATH."""
    folder = str(Path(sys.executable).parent)
    if shutil.which("onnxsim") is None or folder not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = folder + os.pathsep + os.environ.get("PATH", "")
    if shutil.which("onnxsim") is None:
        raise ExportError("onnx2tf", f"the onnxsim command onnx2tf runs is not installed (looked in {folder} and PATH)")


def _agrees(folder: Path, onnx_path: Path, ctx: ExportContext, atol: float = 1e-3, rows: int | None = None) -> bool:
    """The converted SavedModel against onnxruntime on the example batch (onnx2tf's own per-op check uses
    random data with batch 1 and does not see a transposed square input); `rows`: onnx2tf fixed the batch."""
    import numpy as np
    import onnxruntime
    import tensorflow as tf

    feed = {ctx.contract.inputs[0].name: ctx.example[:rows]}
    expected = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"]).run(None, feed)[0]
    serve = tf.saved_model.load(str(folder)).signatures["serving_default"]
    got = next(iter(serve(**{k: tf.constant(v) for k, v in feed.items()}).values())).numpy()
    return got.shape == expected.shape and bool(np.allclose(got, expected, atol=atol, rtol=1e-3))


def _key(source: str, extra: dict | None) -> str:
    return f"onnx2tf:{source}" + "".join(f":{k}={v}" for k, v in sorted((extra or {}).items()))


def _opset(path: Path) -> int:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


def _steps(ctx: ExportContext, source: str, target: str, extra: dict | None) -> list[ToolStep]:
    flags = "".join(f", {k}={v}" for k, v in sorted((extra or {}).items()))
    exporter = "torch.onnx (TorchScript)" if TORCHSCRIPT_NOTE in ctx.workarounds.get(source, []) else "torch.onnx (dynamo)"
    return [
        ToolStep(tool=exporter, version=version_of("torch"), detail=f"opset {_opset(ctx.intermediates[source])}"),
        ToolStep(tool="onnx2tf", version=version_of("onnx2tf"),
                 detail=f"channels-last inside, input kept {[-1, *ctx.contract.inputs[0].shape[1:]]}{flags}"),
        ToolStep(tool=target, version=version_of("tensorflow")),
    ]


def _exported(ctx: ExportContext, source: str, target: str, extra: dict | None) -> Exported:
    rows = (extra or {}).get("batch_size")
    batch = {} if not rows else dict(dynamic_batch=False, max_batch=rows, batch_note=(
        f"onnx2tf fixed the batch at {rows} (batch_size): the adapter splits larger batches"))
    notes = ctx.workarounds.get(source, []) + ctx.workarounds.get(_key(source, extra), [])
    return Exported(steps=_steps(ctx, source, target, extra), notes=notes, **batch)


def export_savedmodel_via_onnx(ctx: ExportContext, out: Path, source: str = "torch-onnx",
                               onnx2tf: dict | None = None) -> Exported:
    """`onnx2tf`: extra keyword options for onnx2tf.convert (a remedy's flags: not_use_onnxsim, batch_size, ...)."""
    converted = _converted(ctx, source, onnx2tf)
    target = out / "model.savedmodel"
    target.mkdir()
    for name in SAVEDMODEL_FILES:
        item = converted / name
        if item.is_dir():
            shutil.copytree(item, target / name)
        elif item.is_file():
            shutil.copyfile(item, target / name)
    return _exported(ctx, source, "SavedModel", onnx2tf)


def export_tflite_via_onnx(ctx: ExportContext, out: Path, source: str = "torch-onnx",
                           onnx2tf: dict | None = None) -> Exported:
    converted = _converted(ctx, source, onnx2tf)
    found = sorted(converted.glob("*_float32.tflite"))
    if not found:
        raise ExportError(source, f"onnx2tf wrote no *_float32.tflite in {converted}")
    shutil.copyfile(found[0], out / "model.tflite")
    return _exported(ctx, source, "TFLite (fp32)", onnx2tf)

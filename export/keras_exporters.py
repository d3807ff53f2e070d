"""Keras-native targets: the .keras file, a SavedModel with a named signature, TFLite fp32 and int8."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import tensorflow as tf

from crossdeploy.repository import ToolStep
from crossdeploy.versions import version_of

from .context import ExportContext, Exported

FIXED_DATE = "1980-01-01@00:00:00"


def serving_function(ctx: ExportContext, model=None, batch: int | None = None):
    """The Keras model as a tf.function with the contract's names (digits: input `image`, output `logits`).
    `model`: another build of it (an unrolled one); `batch`: a fixed batch instead of the contract's."""
    model = ctx.model if model is None else model
    tensor = ctx.contract.inputs[0]
    from .modelspec import DATATYPES

    if batch is None:
        batch = None if tensor.shape[0] == -1 else tensor.shape[0]
    signature = [tf.TensorSpec([batch, *tensor.shape[1:]], tf.as_dtype(DATATYPES[tensor.datatype]), name=tensor.name)]
    output = ctx.contract.outputs[0].name

    @tf.function(input_signature=signature, autograph=False)
    def serve(image):
        return {output: model(image, training=False)}

    return serve, signature


def _reproducible_keras_zip(path: Path) -> None:
    """Keras stamps the save time into metadata.json and the zip entries; identical weights must give
    identical bytes, or every pipeline run would add a version. The stamp is replaced by a fixed one."""
    entries = []
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            data = archive.read(info)
            if info.filename == "metadata.json":
                metadata = json.loads(data)
                metadata["date_saved"] = FIXED_DATE
                data = json.dumps(metadata).encode()
            entries.append((info.filename, data))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for name, data in entries:
            archive.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), data)


def drop_fingerprint(savedmodel: Path) -> None:
    """fingerprint.pb holds a random uuid per save (TF treats the file as optional); without it, the same
    graph and weights give the same bytes."""
    (savedmodel / "fingerprint.pb").unlink(missing_ok=True)


def export_keras(ctx: ExportContext, out: Path) -> Exported:
    ctx.model.save(out / "model.keras")
    _reproducible_keras_zip(out / "model.keras")
    return Exported(steps=[ToolStep(tool="tf_keras model.save", version=version_of("tf-keras"), detail=".keras zip")])


def export_savedmodel(ctx: ExportContext, out: Path) -> Exported:
    serve, _ = serving_function(ctx)
    tf.saved_model.save(ctx.model, str(out / "model.savedmodel"), signatures={"serving_default": serve})
    drop_fingerprint(out / "model.savedmodel")
    return Exported(steps=[ToolStep(tool="tf.saved_model.save", version=version_of("tensorflow"), detail="signature serving_default")])


def unrolled(model):
    """The model with every RNN layer rebuilt with `unroll=True` and the same weights: the recurrence becomes
    plain ops per time step (no while loop, no tensor lists), which every converter handles."""
    import tf_keras as keras

    def clone(layer):
        config = layer.get_config()
        if isinstance(layer, keras.layers.RNN):
            config["unroll"] = True
        return layer.__class__.from_config(config)

    copy = keras.models.clone_model(model, clone_function=clone)
    copy.set_weights(model.get_weights())
    return copy


def _converter(ctx: ExportContext, unroll: bool = False, fixed_batch: int | None = None, select_tf_ops: bool = False,
               builtins=None):
    model = unrolled(ctx.model) if unroll else ctx.model
    serve, _ = serving_function(ctx, model, fixed_batch)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([serve.get_concrete_function()], model)
    ops = [builtins or tf.lite.OpsSet.TFLITE_BUILTINS]
    if select_tf_ops:  # what the converter's own message recommends for tensor lists it cannot lower
        ops.append(tf.lite.OpsSet.SELECT_TF_OPS)
        converter._experimental_lower_tensor_list_ops = False
    converter.target_spec.supported_ops = ops
    return converter


def _options(unroll: bool, fixed_batch: int | None, select_tf_ops: bool) -> tuple[str, dict]:
    """The step detail and the batch fields of the Exported for the converter options used."""
    detail = "".join([", RNN unrolled" if unroll else "", ", SELECT_TF_OPS (Flex)" if select_tf_ops else "",
                      f", fixed batch {fixed_batch}" if fixed_batch else ""])
    batch = {} if not fixed_batch else dict(dynamic_batch=False, max_batch=fixed_batch, batch_note=(
        f"converted at a fixed batch of {fixed_batch}: the adapter splits larger batches"))
    return detail, batch


def export_tflite(ctx: ExportContext, out: Path, unroll: bool = False, fixed_batch: int | None = None,
                  select_tf_ops: bool = False) -> Exported:
    (out / "model.tflite").write_bytes(_converter(ctx, unroll, fixed_batch, select_tf_ops).convert())
    detail, batch = _options(unroll, fixed_batch, select_tf_ops)
    return Exported(steps=[ToolStep(tool="TFLite converter", version=version_of("tensorflow"), detail="fp32" + detail)],
                    **batch)


def export_tflite_int8(ctx: ExportContext, out: Path, unroll: bool = False, fixed_batch: int | None = None,
                       select_tf_ops: bool = False) -> Exported:
    converter = _converter(ctx, unroll, fixed_batch, select_tf_ops, builtins=tf.lite.OpsSet.TFLITE_BUILTINS_INT8)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    calibration = ctx.calibration.astype(np.float32)
    rows = fixed_batch or 1
    converter.representative_dataset = lambda: ([calibration[i : i + rows]] for i in range(0, len(calibration) - rows + 1, rows))
    converter.inference_input_type = tf.float32  # the contract stays FP32 in and out; int8 inside
    converter.inference_output_type = tf.float32
    (out / "model.tflite").write_bytes(converter.convert())
    detail, batch = _options(unroll, fixed_batch, select_tf_ops)
    return Exported(steps=[ToolStep(
        tool="TFLite converter", version=version_of("tensorflow"),
        detail=f"full-integer int8, {len(calibration)} calibration samples, float I/O{detail}",
    )], **batch)

"""Running an artifact with its intermediate tensors kept, for the layer-by-layer diagnosis (export/diverge*.py).
Here because this package is the only code that runs an artifact; each function verifies the artifact's sha256
first, as `Runtime.load` does, and imports its framework inside."""

from __future__ import annotations

import warnings

import numpy as np

from .base import Runtime


def onnx_intermediates(runtime: Runtime, outputs: list[str], samples: np.ndarray, threads: int = 2) -> dict[str, np.ndarray]:
    """Every named tensor of `outputs` for `samples`: an in-memory copy of the ONNX artifact with those tensors
    added to the graph's outputs (as Polygraphy's `--onnx-outputs mark all` does), run by onnxruntime."""
    import onnx
    import onnxruntime as ort

    runtime.verify()
    model = onnx.load(str(runtime.artifact))
    existing = {o.name for o in model.graph.output}
    model.graph.output.extend(onnx.ValueInfoProto(name=name) for name in outputs if name not in existing)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    first_input = session.get_inputs()[0].name
    return dict(zip(names, session.run(None, {first_input: np.ascontiguousarray(samples)})))


def tflite_intermediates(runtime: Runtime, samples: np.ndarray, threads: int = 2) -> tuple[list[dict], dict[int, str], dict[int, np.ndarray], dict, dict[int, float]]:
    """(ops, tensor names, tensor values, input details, quantization steps) of one run of the TFLite artifact
    with every tensor preserved (`experimental_preserve_all_tensors`). A quantized (int8) op output is given
    dequantized, `(q - zero_point) * scale`, and its scale (one quantization step) is in the last item."""
    from ai_edge_litert.interpreter import Interpreter

    runtime.verify()
    with warnings.catch_warnings():  # "for debugging purposes only": that is what this is
        warnings.simplefilter("ignore", UserWarning)
        interpreter = Interpreter(model_content=runtime.artifact.read_bytes(), num_threads=threads,
                                  experimental_preserve_all_tensors=True)
    entry = interpreter.get_input_details()[0]
    interpreter.resize_tensor_input(entry["index"], list(samples.shape), strict=True)
    interpreter.allocate_tensors()
    interpreter.set_tensor(entry["index"], np.ascontiguousarray(samples, dtype=entry["dtype"]))
    interpreter.invoke()
    details = {d["index"]: d for d in interpreter.get_tensor_details()}
    ops = interpreter._get_ops_details()  # the only listing of ops with their tensors LiteRT's Python API has
    values, steps = {}, {}
    for index in {i for op in ops for i in op["outputs"]}:
        value = interpreter.get_tensor(index).copy()
        scales = details[index]["quantization_parameters"]["scales"]
        if np.issubdtype(value.dtype, np.integer) and len(scales) == 1:  # activations: one scale per tensor
            zero = float(details[index]["quantization_parameters"]["zero_points"][0])
            value, steps[index] = ((value.astype(np.float64) - zero) * float(scales[0])).astype(np.float32), float(scales[0])
        values[index] = value
    return ops, {i: d["name"] for i, d in details.items()}, values, entry, steps

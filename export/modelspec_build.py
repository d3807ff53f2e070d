"""The model a spec names: built by its factory, given its weights, and checked against the declared signature
on two samples, so a model that does not fit its spec is refused before any export starts."""

from __future__ import annotations

import numpy as np

from crossdeploy.errors import first_line

from .modelspec_samples import resolve
from .modelspec_schema import DATATYPES, LoadedSpec, Signature, SpecError


def run_source(framework: str, model, x: np.ndarray) -> list[np.ndarray]:
    """The source model itself on `x`: the reference every pathway is compared with."""
    if framework == "pytorch":
        import torch

        with torch.inference_mode():
            produced = model(torch.from_numpy(np.ascontiguousarray(x)))
        return [t.numpy() for t in (produced if isinstance(produced, (tuple, list)) else [produced])]
    produced = model(x, training=False)
    return [np.asarray(t) for t in (produced if isinstance(produced, (tuple, list)) else [produced])]


def build_model(loaded: LoadedSpec):
    """The model the factory returns, with its weights, checked against the spec on two samples: a model that
    does not take the declared inputs or does not return the declared outputs is refused here, not mid-export."""
    spec, path = loaded.spec, loaded.path
    try:
        model = resolve(spec.factory, path, "factory")()
    except SpecError:
        raise
    except Exception as exc:
        raise SpecError(str(path), f"factory: {spec.factory}() raised: {first_line(exc, 200)}") from exc
    _check_type(loaded, model)
    if loaded.weights:
        _load_weights(loaded, model)
    if spec.framework == "pytorch":
        model.eval()
    feed = next(iter(loaded.x.values()))[:2]
    try:
        values = run_source(spec.framework, model, feed)
    except Exception as exc:  # whatever the framework raises for a mismatched input, in one line
        raise SpecError(str(path), f"inputs: the model does not accept samples shaped {list(feed.shape)}: {first_line(exc, 200)}") from exc
    _check_outputs(loaded, values)
    return model


def _check_type(loaded: LoadedSpec, model) -> None:
    spec, path = loaded.spec, loaded.path
    if spec.framework == "pytorch":
        import torch

        if not isinstance(model, torch.nn.Module):
            raise SpecError(str(path), f"factory: {spec.factory}() returned {type(model).__name__}, expected a torch.nn.Module")
    else:
        import tf_keras

        if not isinstance(model, tf_keras.Model):
            raise SpecError(str(path), f"factory: {spec.factory}() returned {type(model).__name__}, expected a tf_keras Model "
                                       "(Keras 2 API: `import tf_keras`)")


def _load_weights(loaded: LoadedSpec, model) -> None:
    try:
        if loaded.spec.framework == "pytorch":
            import torch

            model.load_state_dict(torch.load(loaded.weights, map_location="cpu", weights_only=True))
        else:
            model.load_weights(str(loaded.weights))
    except Exception as exc:  # a state_dict for another architecture, a file of another format
        raise SpecError(str(loaded.path), f"weights: {loaded.weights} does not fit the model the factory builds: "
                                          f"{first_line(exc, 200)}") from exc


def _check_outputs(loaded: LoadedSpec, values: list[np.ndarray]) -> None:
    """What the model returned on two samples against the declared outputs; undeclared, they are taken from it."""
    spec, path = loaded.spec, loaded.path
    if not spec.outputs:  # not declared: what the model returns, batch axis dynamic
        if len(values) != 1:
            raise SpecError(str(path), f"outputs: the model returns {len(values)} outputs; declare the one to serve")
        names = {np.dtype(v): k for k, v in DATATYPES.items()}
        if values[0].dtype not in names or values[0].ndim < 1:
            raise SpecError(str(path), f"outputs: the model returns {values[0].dtype} {list(values[0].shape)}; declare [[outputs]]")
        spec.outputs = [Signature(name="output", datatype=names[values[0].dtype], shape=[-1, *values[0].shape[1:]])]
    if len(values) != len(spec.outputs):
        raise SpecError(str(path), f"outputs: the model returns {len(values)} output(s), the spec declares {len(spec.outputs)}")
    for value, signature in zip(values, spec.outputs):
        if value.dtype != np.dtype(DATATYPES[signature.datatype]):
            raise SpecError(str(path), f"outputs: '{signature.name}' comes out as {value.dtype}, the spec declares {signature.datatype}")
        if list(value.shape[1:]) != signature.shape[1:] or value.shape[0] != 2:
            raise SpecError(str(path), f"outputs: '{signature.name}' comes out as {[-1, *value.shape[1:]]}, the spec declares {signature.shape}")

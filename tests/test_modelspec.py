"""Model specs (bring your own model): a valid spec loads and its model is checked on samples; every bad spec is
refused with one line naming the field, as a SpecError (exit code 2)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from crossdeploy.export.modelspec import SpecError, build_model, load_spec

from .specs import spec_text


class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(64, 10)

    def forward(self, x):
        return self.linear(x.flatten(1))


def tiny():
    torch.manual_seed(0)
    return Tiny()


def samples():
    rng = np.random.default_rng(0)
    return rng.uniform(0, 16, (8, 8, 8)).astype(np.float32), rng.integers(0, 10, 8)


SPEC = spec_text("tiny", "pytorch", "tests.test_modelspec:tiny", '["torch-onnx"]', "{samples}")


def write(tmp_path, text: str):
    path = tmp_path / "spec.toml"
    path.write_text(text)
    return path


def test_a_valid_spec_loads_with_file_samples_and_weights(tmp_path):
    x, y = samples()
    np.savez(tmp_path / "samples.npz", x=x, y=y)
    torch.save(tiny().state_dict(), tmp_path / "w.pt")
    loaded = load_spec(write(tmp_path, SPEC.format(samples='file = "samples.npz"').replace('required', 'weights = "w.pt"\nrequired')))
    assert loaded.spec.name == "tiny" and loaded.weights == (tmp_path / "w.pt").resolve()
    assert loaded.x["image"].shape == (8, 8, 8) and loaded.x["image"].dtype == np.float32 and list(loaded.y) == list(y)
    assert isinstance(build_model(loaded), Tiny)


def test_a_valid_spec_loads_with_a_loader(tmp_path):
    loaded = load_spec(write(tmp_path, SPEC.format(samples='loader = "tests.test_modelspec:samples"')))
    assert loaded.y is not None and loaded.spec.tolerance.atol == 1e-4


BAD = [
    ("not toml", "name = ", "not valid TOML"),
    ("unknown field", SPEC.format(samples='loader = "tests.test_modelspec:samples"') + 'colour = "red"\n', "colour: Extra inputs"),
    ("bad framework", SPEC.format(samples='loader = "tests.test_modelspec:samples"').replace('"pytorch"', '"jax"'), "framework: Input should be 'pytorch' or 'keras'"),
    ("bad factory form", SPEC.format(samples='loader = "tests.test_modelspec:samples"').replace("tests.test_modelspec:tiny", "tiny"), "factory: must look like 'package.module:function'"),
    ("factory not importable", SPEC.format(samples='loader = "tests.test_modelspec:samples"').replace("tests.test_modelspec:tiny", "nope.nothing:build"), "factory: cannot import 'nope.nothing'"),
    ("factory missing", SPEC.format(samples='loader = "tests.test_modelspec:samples"').replace("test_modelspec:tiny", "test_modelspec:huge"), "factory: 'tests.test_modelspec' has no callable 'huge'"),
    ("bad batch axis", SPEC.format(samples='loader = "tests.test_modelspec:samples"').replace("[-1, 8, 8]", "[0, 8, 8]"), "inputs.0.shape: the first (batch) axis must be -1"),
    ("both sample sources", SPEC.format(samples='loader = "tests.test_modelspec:samples"\nfile = "x.npy"'), "samples: give exactly one of"),
    ("missing samples file", SPEC.format(samples='file = "nope.npz"'), "samples.file:"),
    ("samples of the wrong shape", SPEC.format(samples='file = "wrong.npy"'), "samples: input 'image' has shape [8, 64]"),
    ("missing weights", SPEC.format(samples='loader = "tests.test_modelspec:samples"').replace('required', 'weights = "none.pt"\nrequired'), "weights:"),
    ("fixed batch", SPEC.format(samples='loader = "tests.test_modelspec:samples"').replace("[-1, 8, 8]", "[4, 8, 8]"), "the first (batch) axis must be -1"),
    ("unknown tolerance key", SPEC.format(samples='loader = "tests.test_modelspec:samples"') + "[tolerance]\natoll = 1e-3\n", "tolerance.atoll: Extra inputs"),
    ("lossy sample dtype", SPEC.format(samples='loader = "tests.test_modelspec:samples"').replace('datatype = "FP32"\nshape = [-1, 8, 8]', 'datatype = "UINT8"\nshape = [-1, 8, 8]'), "holds float32, which does not convert to UINT8"),
    ("float labels", SPEC.format(samples='loader = "tests.test_modelspec:float_labels"'), "labels hold float64, expected integer class indices"),
    ("labels beyond the classes", SPEC.format(samples='loader = "tests.test_modelspec:big_labels"'), "labels run from 0 to 12, expected class indices 0..9"),
]


def float_labels():
    return samples()[0], np.linspace(0, 1, 8)


def big_labels():
    return samples()[0], np.arange(8) + np.array([0] * 7 + [5])


@pytest.mark.parametrize("case", BAD, ids=[c[0] for c in BAD])
def test_a_bad_spec_is_refused_in_one_line_naming_the_field(tmp_path, case):
    _, text, words = case
    np.save(tmp_path / "wrong.npy", np.zeros((8, 64), np.float32))
    with pytest.raises(SpecError) as error:
        load_spec(write(tmp_path, text))
    message = str(error.value)
    assert words in message and "\n" not in message and error.value.exit_code == 2


def test_a_signature_that_does_not_match_the_model_is_refused_before_export(tmp_path):
    wrong_out = SPEC.format(samples='loader = "tests.test_modelspec:samples"').replace("[-1, 10]", "[-1, 12]")
    with pytest.raises(SpecError, match=r"outputs: 'logits' comes out as \[-1, 10\], the spec declares \[-1, 12\]"):
        build_model(load_spec(write(tmp_path, wrong_out)))
    np.save(tmp_path / "seven.npy", np.zeros((4, 7, 7), np.float32))
    wrong_in = SPEC.format(samples='file = "seven.npy"').replace("[-1, 8, 8]", "[-1, 7, 7]")
    with pytest.raises(SpecError, match=r"inputs: the model does not accept samples shaped \[2, 7, 7\]"):
        build_model(load_spec(write(tmp_path, wrong_in)))


def test_outputs_may_be_left_to_the_model(tmp_path):
    """The README's five-line spec: no [[outputs]]; the model's own output becomes the contract."""
    x, y = samples()
    np.savez(tmp_path / "samples.npz", x=x, y=y)
    path = tmp_path / "spec.toml"
    path.write_text('name = "tiny"\nframework = "pytorch"\nfactory = "tests.test_modelspec:tiny"\n'
                    'inputs = [{name = "image", datatype = "FP32", shape = [-1, 8, 8]}]\nsamples = {file = "samples.npz"}\n')
    loaded = load_spec(path)
    build_model(loaded)
    assert [(s.name, s.datatype, s.shape) for s in loaded.spec.outputs] == [("output", "FP32", [-1, 10])]


def test_a_partial_tolerance_keeps_the_value_comparison(tmp_path):
    path = write(tmp_path, SPEC.format(samples='loader = "tests.test_modelspec:samples"') + "[tolerance]\nrtol = 1e-2\n")
    tolerance = load_spec(path).spec.tolerance
    assert (tolerance.atol, tolerance.rtol, tolerance.min_agreement) == (1e-4, 1e-2, 1.0)


def test_an_output_of_another_dtype_than_declared_is_refused(tmp_path):
    path = write(tmp_path, SPEC.format(samples='loader = "tests.test_modelspec:samples"').replace('datatype = "FP32"\nshape = [-1, 10]', 'datatype = "FP64"\nshape = [-1, 10]'))
    with pytest.raises(SpecError, match=r"outputs: 'logits' comes out as float32, the spec declares FP64"):
        build_model(load_spec(path))

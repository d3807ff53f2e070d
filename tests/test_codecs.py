"""The wire codecs on their own: what a client encodes, the server decodes to the same arrays, each checked once
against the signature; and what the fuzzer found the decoders letting through or crashing on."""

from __future__ import annotations

import io

import numpy as np
import orjson
import pytest
from PIL import Image

from crossdeploy.errors import InvalidInput
from crossdeploy.repository import TensorSignature
from crossdeploy.serving.codecs import tfserving, torchserve, v2_binary, v2_json
from crossdeploy.serving.codecs.v2_json import OutputChoice

SIGNATURE = [TensorSignature(name="image", datatype="FP32", shape=(-1, 8, 8))]
X = np.random.default_rng(0).uniform(0, 16, size=(3, 8, 8)).astype(np.float32)
LOGITS = {"logits": np.random.default_rng(1).normal(size=(3, 10)).astype(np.float32)}


def _v2(data, shape=(1, 8, 8)) -> dict:
    return {"inputs": [{"name": "image", "datatype": "FP32", "shape": list(shape), "data": data}]}


def test_each_client_request_decodes_to_the_same_arrays():
    body, headers = v2_json.encode_request({"image": X})
    assert headers["Content-Type"] == "application/json"
    np.testing.assert_array_equal(v2_json.decode(body, SIGNATURE, 16)["image"], X)
    body, headers = v2_binary.encode_request({"image": X}, binary_output=True)
    assert int(headers[v2_binary.HEADER_LENGTH]) < len(body) and orjson.loads(body[: int(headers[v2_binary.HEADER_LENGTH])])["parameters"]
    np.testing.assert_array_equal(v2_binary.decode(body, SIGNATURE, headers[v2_binary.HEADER_LENGTH], 16)["image"], X)
    for form in ("row", "columnar"):
        body, _ = tfserving.encode_request({"image": X}, form)
        np.testing.assert_array_equal(tfserving.decode(body, SIGNATURE, 16)["image"], X)
    body, _ = torchserve.encode_request({"image": X})
    np.testing.assert_array_equal(torchserve.decode(body, SIGNATURE, 16)["image"], X)


def test_single_examples_get_their_batch_axis():
    for data in (X[0].tolist(), X[0].ravel().tolist()):
        assert torchserve.decode({"data": data}, SIGNATURE)["image"].shape == (1, 8, 8)
    assert tfserving.decode({"inputs": X.tolist()}, SIGNATURE)["image"].shape == (3, 8, 8)


@pytest.mark.parametrize("choices", [[OutputChoice("logits", False, 0)], [OutputChoice("logits", True, 0)],
                                     [OutputChoice("logits", True, 3)], [OutputChoice("logits", False, 3)]])
def test_responses_decode_as_a_client_reads_them(choices):
    body, length = v2_binary.encode({"model_name": "m", "model_version": "1"}, LOGITS, choices)
    assert (length is None) == (not choices[0].binary)
    received = v2_binary.decode_response(body, length)["logits"]
    if choices[0].classes:
        top = np.argsort(-LOGITS["logits"], axis=1)[:, :3]
        assert [[int(s.decode().split(":")[1]) for s in row] for row in received] == top.tolist()
    else:
        np.testing.assert_array_equal(received, LOGITS["logits"])


def test_tfserving_answers_in_the_form_it_was_asked():
    assert "predictions" in orjson.loads(tfserving.encode(LOGITS, "row"))
    assert "outputs" in orjson.loads(tfserving.encode(LOGITS, "columnar"))
    with pytest.raises(InvalidInput, match="exactly one"):
        tfserving.decode({"instances": X.tolist(), "inputs": X.tolist()}, SIGNATURE)


def test_an_image_becomes_one_digit():
    picture = Image.fromarray((255 - X[0] * 255 / 16).astype(np.uint8)).resize((64, 64))
    out = io.BytesIO()
    picture.save(out, "PNG")
    assert torchserve.decode_image(out.getvalue(), SIGNATURE)["image"].shape == (1, 8, 8)


@pytest.mark.parametrize("data, words", [
    ([True] + [0.0] * 63, "must be numbers"),  # numpy alone reads true as 1.0
    ([[0.0] * 8] * 7 + [[False] + [0.0] * 7], "must be numbers"),
    ([10**400] * 64, "beyond the range"),  # numpy alone raises OverflowError: a 500
    ([1e39] * 64, "NaN or infinity"),
    (["0"] * 64, "strings"),
])
def test_values_that_are_not_numbers_of_the_input_type_are_refused(data, words):
    with pytest.raises(InvalidInput, match=words):
        v2_json.decode(_v2(data), SIGNATURE, 16)
    with pytest.raises(InvalidInput, match=words):
        tfserving.decode({"instances": [np.reshape(np.array(data, dtype=object), (8, 8)).tolist()]}, SIGNATURE, 16)


def test_integers_beyond_int64_and_integral_floats_are_numbers():
    assert v2_json.decode(_v2([2**70] + [0] * 63), SIGNATURE, 16)["image"][0, 0, 0] == np.float32(2**70)
    assert v2_json.decode(_v2([0.0] * 64, shape=(1.0, 8.0, 8.0)), SIGNATURE, 16)["image"].shape == (1, 8, 8)
    chosen = v2_json.output_choices({"outputs": [{"name": "logits", "parameters": {"classification": 2.0}}]}, ["logits"])
    assert chosen == [OutputChoice("logits", False, 2)]


@pytest.mark.parametrize("document, words", [
    ({**_v2([0.0] * 64), "id": 5}, "'id' must be a string"),
    ({**_v2([0.0] * 64), "parameters": {"binary_data_output": "yes"}}, "true or false"),
    ({"inputs": [{**_v2([0.0] * 64)["inputs"][0], "parameters": None}]}, "'parameters' must be an object"),
    (_v2([0.0] * 64, shape=(1, 8, 8.5)), "list of integers"),
    (_v2([0.0] * 64 * 5, shape=(5, 8, 8)), "above the maximum of 4"),
])
def test_v2_fields_are_what_the_protocol_says(document, words):
    with pytest.raises(InvalidInput, match=words):
        v2_json.decode(document, SIGNATURE, 4)


ROW = orjson.dumps(X[:1].tolist()).decode()  # one example, as JSON numbers
TWO = [{"name": "a", "datatype": "FP32", "shape": [1], "data": [0]}, {"name": "b", "datatype": "FP32", "shape": [1], "data": [1]}]
TWO_INPUTS = [TensorSignature(name="a", datatype="FP32", shape=(-1,)), TensorSignature(name="b", datatype="FP32", shape=(-1,))]
REPEATED = [  # (decoder, body, signature, the key named twice): each protocol refuses what it cannot read one way
    ("v2-json", f'{{"inputs": {orjson.dumps(_v2(X[0].ravel().tolist())["inputs"]).decode()}, "inputs": []}}', SIGNATURE, "inputs"),
    ("v2-json", '{"inputs": [{"name": "image", "name": "pixels", "datatype": "FP32", "shape": [1, 8, 8], "data": '
     + orjson.dumps(X[0].ravel().tolist()).decode() + "}]}", SIGNATURE, "name"),
    ("v2-binary", '{"inputs": [{"name": "a", "datatype": "FP32", "shape": [1], "parameters": {"binary_data_size": 4, '
     '"binary_data_size": 8}}, {"name": "b", "datatype": "FP32", "shape": [1], "data": [0]}]}', TWO_INPUTS, "binary_data_size"),
    ("tfserving", f'{{"instances": {ROW}, "instances": {ROW}}}', SIGNATURE, "instances"),
    ("tfserving", f'{{"inputs": {{"a": [1], "b": [2], "a": [3]}}}}', TWO_INPUTS, "a"),
    ("tfserving", f'{{"instances": [{{"a": 1, "b": 2, "b": 3}}]}}', TWO_INPUTS, "b"),
    ("torchserve", f'{{"data": {ROW}, "data": {ROW}}}', SIGNATURE, "data"),
]
DECODE = {"v2-json": lambda body, s: v2_json.decode(body, s, 16),
          "v2-binary": lambda body, s: v2_binary.decode(body + b"\0" * 4, s, str(len(body)), 16),
          "tfserving": lambda body, s: tfserving.decode(body, s, 16), "torchserve": lambda body, s: torchserve.decode(body, s, 16)}


@pytest.mark.parametrize("form, body, signature, key", REPEATED, ids=[f"{c[0]}-{c[3]}" for c in REPEATED])
def test_a_key_named_twice_in_one_object_is_refused_by_every_decoder(form, body, signature, key):
    with pytest.raises(InvalidInput, match=f"names '{key}' twice"):
        DECODE[form](body.encode(), signature)


def test_an_input_given_twice_is_refused_and_repeated_names_in_separate_objects_are_not_keys_named_twice():
    with pytest.raises(InvalidInput, match="'a' is given twice"):
        v2_json.decode(orjson.dumps({"inputs": [TWO[0], TWO[0], TWO[1]]}), TWO_INPUTS, 16)
    # Every tensor object has its own "name", "shape"...; a colon inside a string is no key either.
    decoded = v2_json.decode(orjson.dumps({"id": "a:b:c", "inputs": TWO}), TWO_INPUTS, 16)
    assert decoded["a"].tolist() == [0.0] and decoded["b"].tolist() == [1.0]
    rows = tfserving.decode(b'{"instances": [{"a": 1, "b": 2}, {"a": 3, "b": 4}]}', TWO_INPUTS, 16)
    assert rows["a"].tolist() == [1.0, 3.0] and rows["b"].tolist() == [2.0, 4.0]

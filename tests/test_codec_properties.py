"""Properties of the wire codecs over generated input (Hypothesis): any well-formed tensor of any datatype the
codecs carry round-trips exactly through every wire form (and any ink bitmap through the image codec), and any bytes at all end in the protocol's own refusal
(a crossdeploy error, which the gateway answers with a 4xx) or a decoded request, never another exception."""

from __future__ import annotations

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from crossdeploy.errors import CrossdeployError
from crossdeploy.repository import V2_TO_NUMPY, TensorSignature
from crossdeploy.serving.codecs import tfserving, torchserve, v2_binary, v2_json
from crossdeploy.serving.codecs.tensors import parse_json
from crossdeploy.serving.error_responses import status_of

# Examples per property come from the loaded profile (tests/conftest.py): 60 in the suite, more under `make fuzz`.
BOUNDED = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
DATATYPES = ("FP32", "FP64", "INT32", "INT64", "UINT8", "BOOL")


@st.composite
def tensors(draw) -> tuple[list[TensorSignature], dict[str, np.ndarray]]:
    """A signature with one or two inputs (batch axis -1, fixed inner axes) and a batch that fits it."""
    batch = draw(st.integers(1, 4))
    signature, inputs = [], {}
    for index in range(draw(st.integers(1, 2))):
        datatype = draw(st.sampled_from(DATATYPES))
        inner = tuple(draw(st.lists(st.integers(1, 4), min_size=0, max_size=2)))
        dtype = V2_TO_NUMPY[datatype]
        # finite values only: the gateway refuses NaN and infinity on the way in (tested in test_codecs.py)
        elements = st.floats(-1e6, 1e6, width=dtype.itemsize * 8) if dtype.kind == "f" else None
        name = f"input_{index}"
        signature.append(TensorSignature(name=name, datatype=datatype, shape=(-1, *inner)))
        inputs[name] = draw(arrays(dtype, (batch, *inner), elements=elements))
    return signature, inputs


def assert_same(decoded: dict[str, np.ndarray], sent: dict[str, np.ndarray]) -> None:
    assert set(decoded) == set(sent)
    for name, array in sent.items():
        assert decoded[name].dtype == array.dtype and decoded[name].shape == array.shape, name
        np.testing.assert_array_equal(decoded[name], array)


@BOUNDED
@given(tensors())
def test_v2_json_round_trips_exactly(case):
    signature, inputs = case
    body, _ = v2_json.encode_request(inputs)
    assert_same(v2_json.decode(body, signature, 64), inputs)


@BOUNDED
@given(tensors())
def test_v2_binary_round_trips_exactly(case):
    signature, inputs = case
    body, headers = v2_binary.encode_request(inputs)
    assert_same(v2_binary.decode(body, signature, headers[v2_binary.HEADER_LENGTH], 64), inputs)


@BOUNDED
@given(tensors(), st.sampled_from(["row", "columnar"]))
def test_tfserving_rows_and_columns_round_trip_exactly(case, form):
    signature, inputs = case
    body, _ = tfserving.encode_request(inputs, form)
    assert_same(tfserving.decode(body, signature, 64), inputs)


@BOUNDED
@given(arrays(np.float32, st.tuples(st.integers(1, 4), st.just(8), st.just(8)), elements=st.floats(0, 16, width=32)))
def test_torchserve_json_round_trips_exactly(images):
    signature = [TensorSignature(name="image", datatype="FP32", shape=(-1, 8, 8))]
    body, _ = torchserve.encode_request({"image": images})
    assert_same(torchserve.decode(body, signature, 64), {"image": images})


@st.composite
def ink_bitmaps(draw) -> np.ndarray:
    """A 32x32 bitmap of ink as the UCI digits were drawn (what the image codec inverts): ink touches all four
    edges, so the bounding box is the whole picture, and most of the border is background."""
    bitmap = draw(arrays(np.bool_, (32, 32), elements=st.booleans()))
    for edge in (np.s_[0, :], np.s_[-1, :], np.s_[:, 0], np.s_[:, -1]):
        bitmap[edge] = False
    for row, col in ((0, draw(st.integers(0, 31))), (31, draw(st.integers(0, 31))),
                     (draw(st.integers(0, 31)), 0), (draw(st.integers(0, 31)), 31)):
        bitmap[row, col] = True
    return bitmap


@BOUNDED
@given(ink_bitmaps(), st.booleans())
def test_an_ink_bitmap_round_trips_exactly_through_the_image_codec(bitmap, dark_ink):
    """Encoded as a PNG (light ink on dark, or dark on light), decoded to the 8x8 intensities: each is the count of
    ink pixels in its 4x4 block, exactly as the dataset counts them."""
    import io

    from PIL import Image

    from crossdeploy.serving.codecs.image import digit_from_image

    pixels = np.where(bitmap ^ dark_ink, 255, 0).astype(np.uint8)
    png = io.BytesIO()
    Image.fromarray(pixels).save(png, format="PNG")
    expected = bitmap.reshape(8, 4, 8, 4).sum(axis=(1, 3)).astype(np.float32)
    np.testing.assert_array_equal(digit_from_image(png.getvalue()), expected)


SIGNATURE = [TensorSignature(name="image", datatype="FP32", shape=(-1, 8, 8))]
DECODERS = {
    "v2-json": lambda body: v2_json.decode(body, SIGNATURE, 64),
    "v2-binary": lambda body: v2_binary.decode(body, SIGNATURE, str(len(body) // 2), 64),
    "tfserving": lambda body: tfserving.decode(body, SIGNATURE, 64),
    "torchserve-json": lambda body: torchserve.decode(body, SIGNATURE, 64),
    "torchserve-image": lambda body: torchserve.decode_image(body, SIGNATURE),
}
# Bytes that look like the start of a request, then anything: reaches deeper than uniform noise.
PREFIXES = (b"", b"{", b'{"inputs": [', b'{"instances": [[', b'{"data": ', b"\x89PNG\r\n\x1a\n", b"[" * 2000)


@pytest.mark.parametrize("form", DECODERS)
@settings(max_examples=max(150, settings().max_examples), deadline=None)  # noise needs more than structure
@given(prefix=st.sampled_from(PREFIXES), tail=st.binary(max_size=300))
def test_any_bytes_are_decoded_or_refused_as_the_protocols_error(form, prefix, tail):
    try:
        DECODERS[form](prefix + tail)
    except CrossdeployError as exc:
        assert 400 <= status_of(exc) < 500, (type(exc).__name__, exc)  # the caller's fault, said as such


# Any JSON document: keys and strings that may hold colons and quotes, objects inside lists of lists.
KEYS = st.text(alphabet=st.sampled_from('ab:"\\ {}[],é'), max_size=6)
DOCUMENTS = st.recursive(st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(-1e6, 1e6) | KEYS,
                         lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=4), max_leaves=25)


def _objects(document):
    if isinstance(document, dict):
        yield document
    for child in document.values() if isinstance(document, dict) else document if isinstance(document, list) else ():
        yield from _objects(child)


@BOUNDED
@given(st.dictionaries(KEYS, DOCUMENTS, max_size=4), st.data())
def test_a_json_object_is_read_as_sent_unless_it_names_a_key_twice(document, data):
    body = orjson.dumps(document)
    assert parse_json(body) == document  # no repeated key: never refused, whatever colons the strings hold
    objects = [o for o in _objects(document) if o]
    if objects:  # the same document with one key of one object written twice
        target = data.draw(st.sampled_from(objects))
        key = data.draw(st.sampled_from(sorted(target)))
        pair = orjson.dumps({key: target[key]})[1:-1]
        marker = "\u0001repeat\u0001"
        target[marker] = None
        repeated = orjson.dumps(document).replace(orjson.dumps({marker: None})[1:-1], pair, 1)
        with pytest.raises(CrossdeployError, match="twice"):
            parse_json(repeated)

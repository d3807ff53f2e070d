"""What every wire form shares: JSON numbers to a typed array, and the one check of an array against the
model's signature. Each codec calls these once per input while decoding, so what leaves a codec is an array
the runtime can run without checking it again."""

from __future__ import annotations

import json
import math
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import orjson

from crossdeploy.errors import InvalidInput
from crossdeploy.repository import V2_TO_NUMPY, TensorSignature

Signature = Sequence[TensorSignature]
NUMBERS = {int, float}


def parse_json(body: bytes) -> Any:
    """A request body's JSON document. An object naming a key twice is refused: parsers disagree on which value
    wins (orjson and Python keep the last, others the first), so a proxy or a validator in front of the gateway
    may have read a different request from the one the model would run."""
    if not body.strip():
        raise InvalidInput("request body is empty")
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"malformed JSON: {exc}") from exc
    # Every key is followed by a colon, so as many colons as keys in the parsed objects proves no key was
    # repeated; more (a colon inside a string, or a repeated key) is settled by a second, exact parse.
    if bytes(body).count(b":") != _least_keys(document):
        _refuse_repeated_keys(body)
    return document


def _least_keys(document: Any) -> int:
    """A lower bound of the keys in `document`'s objects, cheap on number arrays: of a list of lists only the
    first is walked (a number array's rows hold no objects; when they do, the count falls short and the exact
    parse runs)."""
    count, stack = 0, [document]
    while stack:
        node = stack.pop()
        if type(node) is dict:
            count += len(node)
            stack.extend(value for value in node.values() if type(value) in (dict, list))
        elif node and type(node) is list:
            first = node[0]
            if type(first) is dict:
                stack.extend(value for value in node if type(value) in (dict, list))
            elif type(first) is list:
                stack.append(first)
    return count


def _refuse_repeated_keys(body: bytes) -> None:
    def no_repeats(pairs: list[tuple[str, Any]]) -> None:
        seen = set()
        for key, _ in pairs:
            if key in seen:
                raise InvalidInput(f"the JSON object names {key!r} twice: which one is meant is ambiguous")
            seen.add(key)

    try:
        json.loads(bytes(body), object_pairs_hook=no_repeats)
    except (RecursionError, ValueError) as exc:  # orjson read it; Python's parser recurses less deep
        raise InvalidInput(f"malformed JSON: {str(exc)[:200] or 'nested too deeply'}") from None


def json_object(body: bytes, what: str) -> dict:
    """A request body that must hold one JSON object; `what` says which, in the error."""
    document = parse_json(body)
    if not isinstance(document, dict):
        raise InvalidInput(f"{what} must be a JSON object")
    return document


def json_array(name: str, data: Any, dtype: np.dtype, shape: Sequence[int] | None = None) -> np.ndarray:
    """JSON numbers (flat or nested) to an array of `dtype`; strings, nulls and ragged lists are refused."""
    if dtype.kind == "f" and type(data) is list and data and type(data[0]) is not list and set(map(type, data)) <= NUMBERS:
        return _flat_floats(name, data, dtype, shape)  # V2's usual form: one pass instead of three
    try:
        array = np.asarray(data)
    except (ValueError, TypeError) as exc:
        raise InvalidInput(f"input '{name}': data is not a regular array: {str(exc).splitlines()[0]}") from exc
    kind = array.dtype.kind
    if kind == "O" and all(type(v) in NUMBERS for v in array.ravel()):  # integers beyond int64
        try:
            kind = (array := array.astype(np.float64)).dtype.kind
        except OverflowError as exc:
            raise InvalidInput(f"input '{name}' holds a number beyond the range of {dtype}") from exc
    if kind not in "biuf" or (kind == "b") != (dtype.kind == "b") or (kind != "b" and _holds_booleans(data)):
        found = {"U": "strings", "b": "booleans"}.get(kind, "mixed values")
        wanted = "true or false" if dtype.kind == "b" else "numbers"
        raise InvalidInput(f"input '{name}': data must be {wanted}, got {found}")
    if shape is not None:
        wanted = math.prod(shape)
        if array.size != wanted:
            raise InvalidInput(f"input '{name}': shape {list(shape)} needs {wanted} values, data has {array.size}")
        array = array.reshape(shape)
    with np.errstate(over="ignore", invalid="ignore"):
        return array.astype(dtype, copy=False)


def _flat_floats(name: str, data: list, dtype: np.dtype, shape: Sequence[int] | None) -> np.ndarray:
    try:
        with np.errstate(over="ignore"):  # a number beyond the type's range becomes infinity, refused by check_values
            array = np.array(data, dtype=dtype)
    except OverflowError as exc:  # an integer beyond any float: JSON allows it
        raise InvalidInput(f"input '{name}' holds a number beyond the range of {dtype}") from exc
    if shape is not None:
        if array.size != math.prod(shape):
            raise InvalidInput(f"input '{name}': shape {list(shape)} needs {math.prod(shape)} values, data has {array.size}")
        array = array.reshape(shape)
    return array


def as_integer(value: Any) -> int | None:
    """A JSON integer (JSON Schema counts 8.0 as one; true and false are not), or None."""
    if type(value) is int:
        return value
    if type(value) is float and value.is_integer():
        return int(value)
    return None


def _holds_booleans(data: Any) -> bool:
    """JSON true/false among numbers: numpy would read them as 1 and 0."""
    if not isinstance(data, list) or not data:
        return type(data) is bool
    if isinstance(data[0], list):
        return any(_holds_booleans(row) for row in data)
    return bool in set(map(type, data))


def check_shape(name: str, shape: Sequence[int], spec: TensorSignature, max_batch: int | None) -> None:
    """A (declared or actual) shape against the signature's: rank, fixed dimensions, a batch of 1..max_batch."""
    expected = spec.shape
    if len(shape) != len(expected) or any(e != -1 and e != d for e, d in zip(expected, shape)):
        raise InvalidInput(f"input '{name}': shape {list(shape)} does not match the model's shape {list(expected)}")
    if not shape or shape[0] == 0:
        raise InvalidInput(f"input '{name}' is empty")
    if max_batch is not None and shape[0] > max_batch:
        raise InvalidInput(f"input '{name}': batch {shape[0]} is above the maximum of {max_batch}")


def check_values(name: str, array: np.ndarray) -> np.ndarray:
    """Refuses NaN and infinity (an overflowing JSON number becomes one), which no model answers sensibly."""
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise InvalidInput(f"input '{name}' contains NaN or infinity")
    return array


def check_names(given: Iterable[str], signature: Signature) -> None:
    expected = [spec.name for spec in signature]
    if extra := sorted(set(given) - set(expected)):
        raise InvalidInput(f"unexpected input(s) {extra}, the model has {sorted(expected)}")
    if missing := sorted(set(expected) - set(given)):
        raise InvalidInput(f"the model expects input(s) {missing}, not given")


def conform(signature: Signature, columns: Mapping[str, Any], max_batch: int | None) -> dict[str, np.ndarray]:
    """Named values (arrays or JSON numbers) to contiguous arrays of the signature's dtypes, each checked once:
    names, shape, batch bound, finiteness. What the TF Serving and TorchServe codecs end with."""
    check_names(columns, signature)
    arrays = {}
    for spec in signature:
        value = columns[spec.name]
        dtype = V2_TO_NUMPY[spec.datatype]
        if isinstance(value, np.ndarray):
            array = np.ascontiguousarray(value, dtype=dtype)
        else:
            array = json_array(spec.name, value, dtype)
        check_shape(spec.name, array.shape, spec, max_batch)
        arrays[spec.name] = check_values(spec.name, array)
    return arrays

"""TensorProto <-> numpy without a socket: every dtype the server carries, both encodings
TensorFlow sends (``tensor_content`` and the typed ``*_val`` fields, short form included),
checked against TensorFlow's own ``make_tensor_proto`` / ``make_ndarray``; and the TF
Serving rules shared by its front ends (version labels, version states)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import ml_dtypes
import numpy as np
import pytest

from nbdeploy.errors import ProtocolError
from nbdeploy.server.tensor_proto import TF_TYPES, check_types, fill, to_array
from nbdeploy.server.tfserving import label_version, version_states
from nbdeploy.types import TensorSpec

tf = pytest.importorskip("tensorflow")
LIMIT = 2**20  # the largest array to_array may build


def sample(numpy: str) -> np.ndarray:
    rng = np.random.default_rng(0)
    if numpy == "object":
        return np.array([[b"a", "é".encode()], [b"", b"xyz"]], dtype=object)
    if numpy == "bool":
        return rng.integers(0, 2, (2, 3)).astype(bool)
    if numpy in ("float16", "float32", "float64", "bfloat16"):
        return (rng.standard_normal((2, 3)) * 100).astype(np.dtype(numpy))
    info = np.iinfo(np.dtype(numpy))
    return rng.integers(info.min, info.max, (2, 3), dtype=np.dtype(numpy), endpoint=True)


@pytest.mark.parametrize("numpy", list(TF_TYPES))
def test_what_tensorflow_encodes_decodes_to_the_same_array(numpy: str) -> None:
    array = sample(numpy)
    proto = tf.make_tensor_proto(array)
    assert proto.dtype == TF_TYPES[numpy].number
    decoded = to_array(proto, "x", LIMIT)
    assert decoded.dtype == array.dtype and decoded.shape == array.shape
    np.testing.assert_array_equal(decoded, array)


@pytest.mark.parametrize("numpy", list(TF_TYPES))
def test_what_we_encode_tensorflow_decodes_to_the_same_array(numpy: str) -> None:
    array = sample(numpy)
    proto = tf.make_tensor_proto(0)
    proto.Clear()
    fill(proto, array, "y")
    decoded = tf.make_ndarray(proto)
    assert decoded.dtype == array.dtype and decoded.shape == array.shape
    np.testing.assert_array_equal(decoded, array)


@pytest.mark.parametrize(
    ("field", "values", "shape", "numpy"),
    [
        ("float_val", [1.5, 2.5, 3.5, 4.5], [2, 2], "float32"),
        ("float_val", [7.0], [2, 3], "float32"),  # TensorFlow's short form: the last repeats
        ("int_val", [1, 2], [4], "int32"),
        ("int_val", [255, 3], [2], "uint8"),
        ("int64_val", [2**40, -1, 5], [3], "int64"),
        ("double_val", [], [2], "float64"),  # no values: zeros
        ("bool_val", [True, False], [2, 1], "bool"),
        ("half_val", [15360, 16384], [2], "float16"),  # the bits of 1.0 and 2.0
        ("uint64_val", [2**63], [1], "uint64"),
        ("string_val", [b"one", b"two"], [2], "object"),
        ("string_val", [b"same"], [3], "object"),
    ],
)
def test_typed_fields_decode_as_tensorflow_reads_them(
    field: str, values: list[object], shape: list[int], numpy: str
) -> None:
    proto = tf.make_tensor_proto(0)
    proto.Clear()
    proto.dtype = TF_TYPES[numpy].number
    for size in shape:
        proto.tensor_shape.dim.add(size=size)
    getattr(proto, field).extend(values)
    ours, theirs = to_array(proto, "x", LIMIT), tf.make_ndarray(proto)
    assert ours.dtype == theirs.dtype
    np.testing.assert_array_equal(ours, theirs)


def test_scalars_and_python_lists_from_make_tensor_proto() -> None:
    for proto in (tf.make_tensor_proto(3.0), tf.make_tensor_proto([[1, 2], [3, 4]]),
                  tf.make_tensor_proto(5.0, shape=[2, 3]),
                  tf.make_tensor_proto(["a", "b"])):  # fmt: skip
        np.testing.assert_array_equal(to_array(proto, "x", LIMIT), tf.make_ndarray(proto))


def test_tensor_content_is_viewed_not_copied() -> None:
    proto = tf.make_tensor_proto(np.ones((1000, 10), np.float32))
    assert not to_array(proto, "x", LIMIT).flags.owndata


def test_text_from_onnxruntime_travels_as_utf8() -> None:
    proto = tf.make_tensor_proto(0)
    proto.Clear()
    fill(proto, np.array(["héllo", "wörld"], dtype=object), "y")
    assert tf.make_ndarray(proto).tolist() == ["héllo".encode(), "wörld".encode()]


def test_bfloat16_bits_travel_in_half_val() -> None:
    proto = tf.make_tensor_proto(np.array([1.0, -2.0], np.float32), dtype=tf.bfloat16)
    decoded = to_array(proto, "x", LIMIT)
    assert decoded.dtype == ml_dtypes.bfloat16 and decoded.tolist() == [1.0, -2.0]


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        (lambda p: setattr(p, "dtype", 8), r"input 'x': DT_COMPLEX64 tensors are not served"),
        (lambda p: setattr(p, "tensor_content", b"\0" * 5), r"5 bytes, but shape \[2, 3\]"),
        (lambda p: p.tensor_shape.dim.add(size=-1), r"not fully defined"),
        (lambda p: setattr(p.tensor_shape, "unknown_rank", True), r"rank is unknown"),
    ],
)
def test_bad_tensors_are_refused_naming_the_input(
    tamper: Callable[[Any], object], message: str
) -> None:
    proto = tf.make_tensor_proto(np.zeros((2, 3), np.float32))
    tamper(proto)
    with pytest.raises(ProtocolError, match=message):
        to_array(proto, "x", LIMIT)


def test_too_many_typed_values_are_refused() -> None:
    proto = tf.make_tensor_proto(0.0)
    proto.float_val[:] = [1.0, 2.0, 3.0]
    proto.tensor_shape.dim.add(size=2)
    with pytest.raises(ProtocolError, match=r"3 values do not fit shape \[2\]"):
        to_array(proto, "x", LIMIT)


def test_a_short_form_cannot_ask_for_more_than_the_limit() -> None:
    proto = tf.make_tensor_proto(1.0, shape=[LIMIT, 1])  # one float_val, 4 MiB once built
    assert len(proto.SerializeToString()) < 100
    with pytest.raises(ProtocolError, match=r"needs 4194304 bytes, more than .* 1048576") as e:
        to_array(proto, "x", LIMIT)
    assert e.value.status == 413


def test_typed_values_out_of_range_are_refused() -> None:
    proto = tf.make_tensor_proto(0, dtype=tf.uint8)
    proto.int_val[:] = [300]
    with pytest.raises(ProtocolError, match="out of range for DT_UINT8"):
        to_array(proto, "x", LIMIT)


def test_outputs_without_a_tensorflow_type_are_refused() -> None:
    proto = tf.make_tensor_proto(0)
    with pytest.raises(ProtocolError, match="complex64") as caught:
        fill(proto, np.zeros(2, np.complex64), "y")
    assert caught.value.status == 409


def test_a_type_other_than_the_signatures_is_refused_in_tensorflows_words() -> None:
    specs = [TensorSpec("text", "object", ("batch", 2)), TensorSpec("x", "float32", (3,))]
    check_types({"text": np.array([[b"a", b"b"]], dtype=object)}, specs, "m")
    check_types({"other": np.zeros(1)}, specs, "m")  # the dataplane names unknown inputs
    with pytest.raises(ProtocolError, match=r"input 'text' of model 'm' is DT_FLOAT, but the "
                       r"signature takes DT_STRING; .*dtype=tf\.string\)"):  # fmt: skip
        check_types({"text": np.zeros((1, 2), np.float32)}, specs, "m")


def test_version_labels_come_from_the_traffic_split() -> None:
    assert label_version("m", "stable", {"1": 0.0, "2": 100.0}) == "2"
    assert label_version("m", "stable", {"1": 90.0, "2": 10.0}) == "1"
    assert label_version("m", "canary", {"1": 90.0, "2": 10.0}) == "2"
    assert label_version("m", "canary", {"1": 10.0, "2": 90.0}) == "2"
    with pytest.raises(ProtocolError, match=r"its labels now: stable \(version 2\)") as caught:
        label_version("m", "canary", {"1": 0.0, "2": 100.0})
    assert caught.value.status == 404


def test_version_states_map_the_repository_index() -> None:
    rows = [
        {"name": "m", "version": "1", "state": "UNAVAILABLE", "reason": "unloaded"},
        {"name": "m", "version": "2", "state": "READY", "reason": ""},
        {"name": "m", "version": "3", "state": "UNAVAILABLE", "reason": "bad model.onnx"},
        {"name": "other", "version": "1", "state": "READY", "reason": ""},
    ]
    assert version_states("m", rows) == [(1, 50, ""), (2, 30, ""), (3, 50, "bad model.onnx")]
    assert version_states("m", rows, 2) == [(2, 30, "")]
    with pytest.raises(ProtocolError, match="version 4 of model 'm'"):
        version_states("m", rows, 4)
    with pytest.raises(ProtocolError, match="model 'x'"):
        version_states("x", rows)

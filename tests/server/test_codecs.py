"""The codecs against tritonclient's own request builder and response parser."""

from __future__ import annotations

import json

import ml_dtypes
import numpy as np
import pytest

from nbdeploy.errors import ProtocolError
from nbdeploy.server.codecs import InferRequest, decode_request, encode_response

httpclient = pytest.importorskip("tritonclient.http")


def _request(arrays: dict[str, np.ndarray], binary: bool) -> tuple[bytes, int | None]:
    from tritonclient.utils import np_to_triton_dtype

    inputs = []
    for name, array in arrays.items():
        item = httpclient.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
        item.set_data_from_numpy(array, binary_data=binary)
        inputs.append(item)
    body, length = httpclient.InferenceServerClient.generate_request_body(inputs)
    return body if isinstance(body, bytes) else body.encode(), length


@pytest.mark.parametrize("binary", [False, True])
def test_tritonclient_requests_decode_exactly(binary: bool) -> None:
    arrays = {
        "f32": np.arange(6, dtype=np.float32).reshape(2, 3) / 7,
        "f16": np.array([[0.5, -1.25]], dtype=np.float16),
        "i64": np.array([1, -2, 3], dtype=np.int64),
        "flag": np.array([True, False]),
        "text": np.array([b"hello", b"w\xc3\xb6rld"], dtype=object),
    }
    if binary:  # tritonclient sends BF16 only as binary data
        arrays["bf16"] = np.array([1.5, -2.0, 3.25], dtype=ml_dtypes.bfloat16)
    request = decode_request(*_request(arrays, binary))
    for name, want in arrays.items():
        got = request.inputs[name]
        assert got.shape == want.shape and got.dtype == want.dtype, name
        np.testing.assert_array_equal(got, want, err_msg=name)


@pytest.mark.parametrize("binary", [False, True])
def test_responses_parse_with_tritonclient(binary: bool) -> None:
    outputs = {
        "scores": np.array([[0.1, 0.9]], np.float32),
        "label": np.array([b"cat"], dtype=object),
    }
    if binary:  # tritonclient reads BF16 only from binary data
        outputs["half"] = np.array([0.5, 1.75], ml_dtypes.bfloat16)
    body, length = encode_response(
        "m", "2", outputs, InferRequest({}, binary_default=binary, id="7")
    )
    result = httpclient.InferenceServerClient.parse_response_body(body, header_length=length)
    assert result.get_response()["model_version"] == "2" and result.get_response()["id"] == "7"
    np.testing.assert_array_equal(result.as_numpy("scores"), outputs["scores"])
    if binary:
        np.testing.assert_array_equal(result.as_numpy("half").astype(np.float32), [0.5, 1.75])
    label = result.as_numpy("label").tolist()  # tritonclient gives str from JSON, bytes from binary
    assert [v.encode() if isinstance(v, str) else v for v in label] == [b"cat"]


@pytest.mark.parametrize(
    ("body", "length", "message"),
    [
        (b"{not json", None, "not valid JSON"),
        (b"[1, 2]", None, "must be a JSON object"),
        (b'{"inputs": []}', None, "non-empty 'inputs'"),
        (
            b'{"inputs": [{"name": "x", "datatype": "FP99", "shape": [1], "data": [1]}]}',
            None,
            "unknown datatype",
        ),
        (
            b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [2, 2], "data": [1, 2, 3]}]}',
            None,
            "needs 4 values, got 3",
        ),
        (
            b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": ["a"]}]}',
            None,
            "data is not FP32",
        ),
        (b"{}", 10, "but the body has 2 bytes"),
    ],
)
def test_malformed_requests_name_the_problem(body: bytes, length: int | None, message: str) -> None:
    with pytest.raises(ProtocolError, match=message) as info:
        decode_request(body, length)
    assert info.value.status == 400


def test_unknown_requested_output_is_refused() -> None:
    with pytest.raises(ProtocolError, match=r"unknown output\(s\) \['nope'\]"):
        encode_response("m", "1", {"y": np.zeros(1, np.float32)}, InferRequest({}, {"nope": False}))


def test_binary_sizes_that_do_not_add_up() -> None:
    tensor = {"name": "x", "datatype": "FP32", "shape": [2], "parameters": {"binary_data_size": 8}}
    header = json.dumps({"inputs": [tensor]}).encode()
    with pytest.raises(ProtocolError, match="goes past the end"):
        decode_request(header + b"\0" * 4, len(header))
    with pytest.raises(ProtocolError, match="not claimed by any input"):
        decode_request(header + b"\0" * 12, len(header))


def test_raw_binary_requests_deduce_the_one_inputs_shape() -> None:
    from nbdeploy.server.codecs import decode_raw_binary
    from nbdeploy.types import TensorSpec

    x = TensorSpec("x", "float32", ("batch", 3))
    got = decode_raw_binary(np.ones(3, np.float32).tobytes(), [x], True, "m")
    assert got.inputs["x"].shape == (1, 3) and got.binary_default
    text = decode_raw_binary(b"\x05\x00\x00\x00hello", [TensorSpec("t", "object", (1,))],
                             False, "m")  # fmt: skip
    assert text.inputs["t"].tolist() == [b"hello"]
    with pytest.raises(ProtocolError, match="Raw request must only have 1 input"):
        decode_raw_binary(b"", [x, x], True, "m")
    with pytest.raises(ProtocolError, match="cannot be deduced"):
        decode_raw_binary(b"", [TensorSpec("v", "float32", ("batch", None))], True, "m")

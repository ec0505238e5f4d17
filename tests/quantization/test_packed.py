"""4-bit storage: INT4/UINT4 tensors packed two to a byte, run and folded by onnxruntime."""

from __future__ import annotations

from pathlib import Path

import ml_dtypes
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper, numpy_helper

import nbdeploy as nbd
from nbdeploy.quantization import QuantizationReport, maths, parse_scheme
from nbdeploy.quantization.schemes import KMeans, WeightOnly
from nbdeploy.quantization.store import DiskStore
from nbdeploy.quantization.weights import TensorError, error_of

IN, OUT = 64, 48
PACKED = ["int4-weight-symmetric", "int4-weight-asymmetric", "int4-weight-symmetric-b32",
          "int2-weight-asymmetric", "kmeans-16", "kmeans-4"]  # fmt: skip


def _weight(outlier: bool = False) -> np.ndarray:
    w = np.random.default_rng(0).standard_normal((IN, OUT)).astype(np.float32)
    if outlier:
        w[3, 5] = 40.0  # one large value: per channel, it coarsens all of column 5
    return w


def _model(w: np.ndarray, *, reduce: bool = False) -> nbd.Artifact:
    """x @ w at opset 17; ``reduce`` adds a ReduceMean whose axes are an attribute there
    (an input from opset 18): raising the opset import alone would break it."""
    nodes = [helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")]
    width: list[int | str] = ["n", OUT]
    if reduce:
        nodes[0].output[0] = "h"
        nodes.append(helper.make_node("ReduceMean", ["h"], ["y"], axes=[1], keepdims=1))
        width = ["n", 1]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["n", IN])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, width)],
        [numpy_helper.from_array(w, "w")],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return nbd.export(model, np.eye(IN, dtype=np.float32), name="mm")


def _restored(art: nbd.Artifact) -> np.ndarray:
    """The weight the artifact computes with: x = I makes x @ ŵ = ŵ, exactly."""
    return _y(art, np.eye(IN, dtype=np.float32))


def _y(art: nbd.Artifact, x: np.ndarray) -> np.ndarray:
    y = art.run(x)["y"]
    assert isinstance(y, np.ndarray)
    return y


def _errors(art: nbd.Artifact) -> tuple[TensorError, ...]:
    assert isinstance(art.report, QuantizationReport)
    return art.report.tensors


def _initializers(art: nbd.Artifact) -> dict[str, onnx.TensorProto]:
    return {i.name: i for i in art.onnx.graph.initializer}


def test_int4_weights_take_half_the_bytes_of_int8_in_int4_types() -> None:
    art = _model(_weight())
    int8 = _initializers(nbd.quantize(art, "int8-weight-symmetric", progress=False))["w_q"]
    for scheme, kind in (("int4-weight-symmetric", onnx.TensorProto.INT4),
                         ("int4-weight-asymmetric", onnx.TensorProto.UINT4)):  # fmt: skip
        q = nbd.quantize(art, scheme, progress=False)
        int4 = _initializers(q)["w_q"]
        assert int4.data_type == kind and _initializers(q)["w_zero_point"].data_type == kind
        assert len(int4.raw_data) == IN * OUT // 2 == len(int8.raw_data) // 2
        assert q.onnx.opset_import[0].version == 21 and q.onnx.ir_version >= 10


EXACT = ["int4-weight-symmetric", "int4-weight-asymmetric", "int4-weight-symmetric-b32",
         "int2-weight-symmetric", "int2-weight-asymmetric-b64", "kmeans-16",
         "kmeans-3"]  # fmt: skip


@pytest.mark.parametrize("scheme", EXACT)
def test_onnxruntime_computes_exactly_what_the_maths_module_does(scheme: str) -> None:
    w = _weight()
    config = parse_scheme(scheme)
    want: np.ndarray
    if isinstance(config, WeightOnly):
        quantize = maths.symmetric if config.symmetric else maths.asymmetric
        axis = 0 if config.block_size else 1  # blocks run along a column's inputs
        affine = quantize(w, bits=config.bits, axis=axis, block_size=config.block_size)
        want = affine.dequantize()
    else:
        assert isinstance(config, KMeans)
        want = maths.kmeans(w, k=config.k).dequantize()
    q = nbd.quantize(_model(w), scheme, progress=False)
    np.testing.assert_array_equal(_restored(q), want)
    assert _errors(q) == (error_of("w", w, want),)  # the report measures that tensor


def test_blocks_keep_an_outlier_from_coarsening_its_whole_channel() -> None:
    art = _model(_weight(outlier=True))
    channel = _errors(nbd.quantize(art, "int4-weight-symmetric", progress=False))[0]
    block = _errors(nbd.quantize(art, "int4-weight-symmetric-b32", progress=False))[0]
    assert block.rmse < channel.rmse and block.snr_db > channel.snr_db
    scales = _initializers(nbd.quantize(art, "int4-weight-symmetric-b32", progress=False))
    assert list(scales["w_scale"].dims) == [IN // 32, OUT]


INDICES = [(16, onnx.TensorProto.UINT4, 2, 21), (4, onnx.TensorProto.UINT2, 4, 25)]


@pytest.mark.parametrize(("k", "kind", "per_byte", "opset"), INDICES)
def test_kmeans_indices_are_packed(k: int, kind: int, per_byte: int, opset: int) -> None:
    q = nbd.quantize(_model(_weight()), f"kmeans-{k}", progress=False)
    indices = _initializers(q)["w_kmeans_indices"]
    assert indices.data_type == kind and len(indices.raw_data) == IN * OUT // per_byte
    assert q.onnx.opset_import[0].version == opset


@pytest.mark.parametrize("scheme", PACKED)
def test_onnxruntime_folds_the_weight_paths_at_load(scheme: str, tmp_path: Path) -> None:
    q = nbd.quantize(_model(_weight()), scheme, progress=False)
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    options.log_severity_level = 3  # its note that the saved model suits this machine only
    for key, value in q.session_config.items():
        options.add_session_config_entry(key, value)
    ort.InferenceSession(q.onnx.SerializeToString(), options, providers=["CPUExecutionProvider"])
    optimized = onnx.load(tmp_path / "optimized.onnx")
    assert [n.op_type for n in optimized.graph.node] == ["MatMul"]  # float weights, folded


def test_a_model_raised_to_opset_21_keeps_its_answers() -> None:
    w = _weight()
    art = _model(w, reduce=True)
    q = nbd.quantize(art, "int4-weight-symmetric", progress=False)
    assert q.onnx.opset_import[0].version == 21
    reduce = next(n for n in q.onnx.graph.node if n.op_type == "ReduceMean")
    assert len(reduce.input) == 2 and "axes" not in {a.name for a in reduce.attribute}
    x = np.random.default_rng(1).standard_normal((5, IN)).astype(np.float32)
    want = (x @ maths.symmetric(w, bits=4, axis=1).dequantize()).mean(1, keepdims=True)
    np.testing.assert_allclose(_y(q, x), want, rtol=1e-5, atol=1e-5)


SUB_BYTE = [
    (ml_dtypes.int4, onnx.TensorProto.INT4, 2),
    (ml_dtypes.uint2, onnx.TensorProto.UINT2, 4),
]


@pytest.mark.parametrize(("dtype", "kind", "per_byte"), SUB_BYTE)
def test_the_disk_store_writes_and_reads_packed_tensors(
    dtype: type, kind: int, per_byte: int, tmp_path: Path
) -> None:
    low, high = (-8, 8) if dtype is ml_dtypes.int4 else (0, 4)
    values: np.ndarray = np.resize(np.arange(low, high), 6001).astype(dtype)  # not whole bytes
    store = DiskStore(tmp_path / "model.onnx")
    tensor = store.put(values, "q")
    assert tensor.data_type == kind and not tensor.raw_data
    assert int(tensor.external_data[2].value) == -(-values.size // per_byte)  # packed length
    np.testing.assert_array_equal(store.read(tensor), values)
    store.discard()


def test_block_names_and_bad_blocks() -> None:
    assert parse_scheme("int4-weight-symmetric-b32") == WeightOnly(True, 4, 32)
    assert WeightOnly(False, 4, 128).name == "int4-weight-asymmetric-b128"
    with pytest.raises(nbd.ConfigError, match="block_size must be 2 or more"):
        parse_scheme("int4-weight-symmetric-b1")


KERNELS = [("Conv", (8, 20, 3, 3), 0), ("ConvTranspose", (20, 8, 3, 3), 1)]


@pytest.mark.parametrize(("op", "shape", "axis"), KERNELS)
def test_blocked_kernels_are_restored_to_their_layout(
    op: str, shape: tuple[int, ...], axis: int, tmp_path: Path
) -> None:
    """A kernel's blocks run over [output channel, everything else] (180 values: the last
    block of 32 is partial); Reshape (and Transpose, for ConvTranspose) fold with them."""
    w = np.random.default_rng(2).standard_normal(shape).astype(np.float32)
    moved = np.moveaxis(w, axis, 0)
    blocks = maths.asymmetric(moved.reshape(8, -1), bits=4, axis=1, block_size=32)
    want = np.moveaxis(blocks.dequantize().reshape(moved.shape), 0, axis)

    def conv(weight: np.ndarray) -> nbd.Artifact:
        graph = helper.make_graph(
            [helper.make_node(op, ["x", "w"], ["y"], name="conv")], "g",
            [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["n", 20, 6, 6])],
            [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["n", 8, "h", "w"])],
            [numpy_helper.from_array(weight, "w")],
        )  # fmt: skip
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        return nbd.export(model, np.zeros((1, 20, 6, 6), np.float32), name=op.lower())

    q = nbd.quantize(conv(w), "int4-weight-asymmetric-b32", progress=False)
    x = np.random.default_rng(3).standard_normal((2, 20, 6, 6)).astype(np.float32)
    np.testing.assert_allclose(_y(q, x), _y(conv(want), x), rtol=1e-6, atol=1e-6)
    assert _errors(q) == (error_of("w", w, want),)
    assert ("Transpose" in {n.op_type for n in q.onnx.graph.node}) == (axis == 1)
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    options.log_severity_level = 3
    for key, value in q.session_config.items():
        options.add_session_config_entry(key, value)
    ort.InferenceSession(q.onnx.SerializeToString(), options, providers=["CPUExecutionProvider"])
    ops = {n.op_type for n in onnx.load(tmp_path / "optimized.onnx").graph.node}
    assert not ops & {"DequantizeLinear", "Reshape", "Transpose"}


@pytest.mark.parametrize("bits", [4, 2])
def test_per_tensor_packed_weights_are_what_the_maths_module_computes(bits: int) -> None:
    w = _weight()
    q = nbd.quantize(_model(w), f"int{bits}-weight-asymmetric", per_channel=False, progress=False)
    np.testing.assert_array_equal(_restored(q), maths.asymmetric(w, bits=bits).dequantize())
    assert len(_initializers(q)["w_zero_point"].dims) == 0  # one scalar zero point, packed

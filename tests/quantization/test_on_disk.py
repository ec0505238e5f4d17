"""Quantizing a model kept on disk: one weight at a time, never the model whole, with the
answers the in-memory schemes (and onnxruntime's own quantizer) give."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

import nbdeploy as nbd
from nbdeploy import _onnxio
from nbdeploy.payloads import OnnxPayload

VOCAB, WIDTH = 64, 48


def _model(rng: np.random.Generator, *, embedding: bool) -> onnx.ModelProto:
    """x → Gemm(transB) → Relu → two MatMuls reading one activation → Add; optionally
    token ids → Gather first, and a head reading the embedding again (tied weights)."""

    def weight(name: str, *shape: int) -> onnx.TensorProto:
        return numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name)

    nodes = [
        helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], transB=1, name="fc1"),
        helper.make_node("Relu", ["h"], ["r"], name="relu"),
        helper.make_node("MatMul", ["r", "wa"], ["a"], name="left"),
        helper.make_node("MatMul", ["r", "wb"], ["b"], name="right"),
        helper.make_node("Add", ["a", "b"], ["y"], name="sum"),
    ]
    inits = [weight("w1", WIDTH, WIDTH), weight("b1", WIDTH), weight("wa", WIDTH, WIDTH),
             weight("wb", WIDTH, WIDTH)]  # fmt: skip
    inputs = [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["n", WIDTH])]
    outputs = [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["n", WIDTH])]
    if embedding:
        nodes = [
            helper.make_node("Gather", ["table", "ids"], ["x"], name="embed"),
            *nodes,
            helper.make_node("Transpose", ["table"], ["table_t"], name="tie"),
            helper.make_node("MatMul", ["y", "table_t"], ["logits"], name="head"),
        ]
        inits.append(weight("table", VOCAB, WIDTH))
        inputs = [helper.make_tensor_value_info("ids", onnx.TensorProto.INT64, ["n"])]
        outputs = [helper.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, ["n", VOCAB])]
    graph = helper.make_graph(nodes, "g", inputs, outputs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _on_disk(model: onnx.ModelProto, folder: Path) -> nbd.Artifact:
    path, copy = folder / "model.onnx", onnx.ModelProto()
    copy.CopyFrom(model)  # saving with external data rewrites the proto
    onnx.save_model(copy, path, save_as_external_data=True, size_threshold=0)
    art = nbd.load(path)
    assert art.payload.folder is not None  # held as a model past 2 GiB is
    return art


def _in_memory(model: onnx.ModelProto, folder: Path) -> nbd.Artifact:
    onnx.save_model(model, folder / "in_memory.onnx")
    return nbd.load(folder / "in_memory.onnx")


@pytest.fixture
def never_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail any step that reads a model kept on disk whole."""

    def refuse(self: OnnxPayload) -> onnx.ModelProto:
        raise AssertionError("a model kept on disk was read whole")

    monkeypatch.setattr(OnnxPayload, "whole", refuse)


def test_int8_dynamic_on_disk_answers_as_onnxruntimes_quantizer(
    rng: np.random.Generator, tmp_path: Path, never_whole: None
) -> None:
    """Same weights, scales and node pattern as ``quantize_dynamic``: the same answers,
    one weight read at a time; a shared activation is quantized once."""
    model = _model(rng, embedding=False)
    in_memory = _in_memory(model, tmp_path)
    reference = nbd.quantize(in_memory, "int8-dynamic", progress=False)  # onnxruntime's
    disk = nbd.quantize(_on_disk(model, tmp_path), "int8-dynamic", progress=False)
    x = rng.standard_normal((5, WIDTH)).astype(np.float32)
    np.testing.assert_allclose(disk.run(x)["y"], reference.run(x)["y"], rtol=1e-5, atol=1e-4)
    ops = [n.op_type for n in disk.onnx.graph.node]
    assert ops.count("MatMulInteger") == 3 and ops.count("DynamicQuantizeLinear") == 2
    assert {t.name for t in disk.report.tensors} == {"w1", "wa", "wb"}
    assert all(t.snr_db > 30 for t in disk.report.tensors)
    inits = {t.name: t for t in disk.onnx.graph.initializer}
    assert "w1" not in inits and inits["w1_quantized"].data_type == onnx.TensorProto.INT8
    assert list(inits["w1_quantized"].dims) == [WIDTH, WIDTH]  # stored as (K, N)


def test_int8_dynamic_on_disk_quantizes_embeddings_and_keeps_tied_weights(
    rng: np.random.Generator, tmp_path: Path, never_whole: None
) -> None:
    model = _model(rng, embedding=True)
    fp32 = _in_memory(model, tmp_path)
    q = nbd.quantize(_on_disk(model, tmp_path), "int8-dynamic", progress=False)
    ids = np.arange(0, VOCAB, 5, dtype=np.int64)
    expected, got = fp32.run(ids)["logits"], q.run(ids)["logits"]
    assert np.abs(got - expected).max() < 0.05 * np.abs(expected).max()
    names = {t.name for t in q.onnx.graph.initializer}
    assert {"table", "table_quantized"} <= names  # the Transpose still reads it in float
    assert "table" in {t.name for t in q.report.tensors}


@pytest.mark.parametrize(
    "scheme",
    ["fp16", "kmeans-16", "int4-weight-asymmetric", "int4-weight-symmetric-b32", "int4-dynamic"],
)
def test_a_scheme_on_disk_gives_what_it_gives_in_memory(
    scheme: str, rng: np.random.Generator, tmp_path: Path, never_whole: None
) -> None:
    model = _model(rng, embedding=False)
    memory = nbd.quantize(_in_memory(model, tmp_path), scheme, progress=False)
    disk = nbd.quantize(_on_disk(model, tmp_path), scheme, progress=False)
    x = rng.standard_normal((3, WIDTH)).astype(np.float32)
    np.testing.assert_array_equal(disk.run(x)["y"], memory.run(x)["y"])
    assert disk.report.tensors == memory.report.tensors
    assert disk.size_bytes < 0.7 * _in_memory(model, tmp_path).size_bytes


def test_a_result_past_the_limit_stays_on_disk_in_one_data_file(
    rng: np.random.Generator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Untouched tensors (the bias) are carried over byte for byte into the result's own
    data file; the result reloads with the same answers."""
    monkeypatch.setattr(_onnxio, "ON_DISK_BYTES", 1000)
    model = _model(rng, embedding=False)
    q = nbd.quantize(_on_disk(model, tmp_path), "int8-dynamic", progress=False)
    assert q.payload.folder is not None
    assert sorted(p.name for p in q.payload.folder.iterdir()) == ["model.onnx", "model.onnx.data"]
    saved = tmp_path / "out" / "q.onnx"
    saved.parent.mkdir()
    q.save(saved)
    x = rng.standard_normal((2, WIDTH)).astype(np.float32)
    np.testing.assert_array_equal(nbd.load(saved).run(x)["y"], q.run(x)["y"])
    bias = next(t for t in q.onnx.graph.initializer if t.name == "b1")
    original = numpy_helper.to_array(model.graph.initializer[1])
    np.testing.assert_array_equal(numpy_helper.to_array(bias, str(q.payload.folder)), original)


def test_a_failed_rewrite_leaves_no_folder_behind(
    rng: np.random.Generator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tempfile

    from nbdeploy.quantization import maths

    art = _on_disk(_model(rng, embedding=False), tmp_path)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(maths, "symmetric", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        nbd.quantize(art, "int8-dynamic", progress=False)
    assert list((tmp_path / "tmp").iterdir()) == []


def test_float16_weights_are_bit_for_bit_those_of_onnxruntimes_converter(
    rng: np.random.Generator,
) -> None:
    """The fast path casts once and sends only the values a cast would get wrong (tiny,
    huge, infinite) through the converter's own function."""
    from onnxruntime.transformers.float16 import convert_np_to_float16

    from nbdeploy.quantization.ort_adapter import to_float16

    scales = rng.choice([1e-9, 1e-6, 1.0, 1e3, 1e5], 20_000)
    values = (rng.standard_normal(20_000) * scales).astype(np.float32)
    values[:10] = [0, -0.0, np.inf, -np.inf, np.nan, 65504, 5.96e-08, -5.96e-08, 65519, -7e4]
    want = convert_np_to_float16(values).view(np.uint16)
    np.testing.assert_array_equal(to_float16(values).view(np.uint16), want)


def test_weights_spread_over_data_files_in_subfolders_are_read_where_they_are(
    rng: np.random.Generator, tmp_path: Path, never_whole: None
) -> None:
    """Each tensor is read from its own file (one in a subfolder); the result gathers
    everything it keeps into one data file of its own."""
    model = _model(rng, embedding=False)
    spread = onnx.ModelProto()
    spread.CopyFrom(model)
    (tmp_path / "m" / "data").mkdir(parents=True)
    for i, tensor in enumerate(spread.graph.initializer):
        location = f"data/part{i}.bin" if i % 2 else f"part{i}.bin"
        (tmp_path / "m" / location).write_bytes(tensor.raw_data)
        tensor.ClearField("raw_data")
        tensor.data_location = onnx.TensorProto.EXTERNAL
        tensor.external_data.add(key="location", value=location)
    onnx.save_model(spread, tmp_path / "m" / "model.onnx")
    on_disk = nbd.load(tmp_path / "m" / "model.onnx")
    assert on_disk.payload.folder is not None
    x = rng.standard_normal((3, WIDTH)).astype(np.float32)
    for scheme in ("int8-dynamic", "kmeans-16", "fp16"):
        want = nbd.quantize(_in_memory(model, tmp_path), scheme, progress=False).run(x)["y"]
        got = nbd.quantize(on_disk, scheme, progress=False).run(x)["y"]
        if scheme == "int8-dynamic":  # onnxruntime's quantizer in memory: same maths
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)
        else:
            np.testing.assert_array_equal(got, want)


def test_a_weight_read_two_ways_stays_float_and_the_model_still_runs(
    rng: np.random.Generator, tmp_path: Path, never_whole: None
) -> None:
    """A weight a Gemm reads transposed and a MatMul reads as it is cannot be stored
    once for both: it is left in float, and the nodes reading it left as they were."""
    w = numpy_helper.from_array(rng.standard_normal((WIDTH, WIDTH)).astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "w"], ["h"], transB=1, name="gemm"),
         helper.make_node("MatMul", ["h", "w"], ["y"], name="matmul")],
        "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["n", WIDTH])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["n", WIDTH])], [w],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    q = nbd.quantize(_on_disk(model, tmp_path), "int8-dynamic", progress=False)
    assert [n.op_type for n in q.onnx.graph.node] == ["Gemm", "MatMul"]
    assert [t.name for t in q.onnx.graph.initializer] == ["w"] and q.report.tensors == ()
    x = rng.standard_normal((2, WIDTH)).astype(np.float32)
    np.testing.assert_array_equal(q.run(x)["y"], _in_memory(model, tmp_path).run(x)["y"])


def test_int4_dynamic_stores_4_bits_and_runs_int8_kernels(
    rng: np.random.Generator, tmp_path: Path
) -> None:
    """The file holds packed INT4 weights behind a Cast that onnxruntime folds at load
    into int8 ones for its integer MatMul; the 4-bit values are int4-weight-symmetric's
    own, so the two answer alike but for int8-dynamic's rounding of the activations."""
    import onnxruntime as ort

    model = _model(rng, embedding=True)
    fp32 = _in_memory(model, tmp_path)
    q = nbd.quantize(fp32, "int4-dynamic", progress=False)
    int4 = {t.name for t in q.onnx.graph.initializer if t.data_type == onnx.TensorProto.INT4}
    assert int4 == {"w1_int4", "wa_int4", "wb_int4"}  # the embedding stays int8
    options = q.session_options()
    options.optimized_model_filepath = str(tmp_path / "loaded.onnx")
    ort.InferenceSession(q.model_bytes(), options, providers=["CPUExecutionProvider"])
    loaded = onnx.load(tmp_path / "loaded.onnx")
    kinds = {t.data_type for t in loaded.graph.initializer if t.name.endswith("_quantized")}
    assert kinds == {onnx.TensorProto.INT8}  # folded at load: no 4-bit weight, no Cast
    assert "Cast" not in {n.op_type for n in loaded.graph.node if n.input[0].endswith("_int4")}
    weight_only = nbd.quantize(fp32, "int4-weight-symmetric", exclude=["table"], progress=False)
    ids = np.arange(0, VOCAB, 3, dtype=np.int64)
    reference = weight_only.run(ids)["logits"]
    assert np.abs(q.run(ids)["logits"] - reference).max() < 0.05 * np.abs(reference).max()
    assert q.size_bytes < 0.6 * fp32.size_bytes and q.report.settings["bits"] == 4


def test_int4_dynamic_loads_and_answers_on_a_transformer() -> None:
    """The tiny transformer (attention's Transpose before a MatMul): onnxruntime 1.32's
    QDQ propagation breaks its opset-21 int4-dynamic graph at load, so the artifact
    carries the setting that skips it."""
    torch = pytest.importorskip("torch")
    from tests import zoo

    ids = np.random.default_rng(0).integers(0, 100, (4, 16))
    feed = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
    example = {k: torch.from_numpy(v) for k, v in feed.items()}
    art = nbd.export(zoo.seeded(zoo.TinyTransformer(width=64)), example, name="tiny",
                     progress=False)  # fmt: skip
    q = nbd.quantize(art, "int4-dynamic", progress=False)
    assert q.session_config["session.disable_quant_qdq"] == "1"
    want, got = art.run(feed), q.run(feed)
    for name, value in want.items():
        assert np.abs(got[name] - value).max() < 0.25 * np.abs(value).max(), name
    assert q.size_bytes < 0.2 * art.size_bytes

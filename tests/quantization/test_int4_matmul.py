"""int4-matmul: onnxruntime's 4-bit MatMulNBits (and GatherBlockQuantized) on real models."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

import nbdeploy as nbd
from nbdeploy import _onnxio
from nbdeploy.quantization import parse_scheme
from nbdeploy.quantization.schemes import Int4MatMul

FLOAT = onnx.TensorProto.FLOAT


def _weight(rng: np.random.Generator, name: str, *shape: int) -> onnx.TensorProto:
    return numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32) / 8, name)


def _layers(opset: int = 20) -> onnx.ModelProto:
    """x(64) → MatMul K=64 → MatMul K=80 (not a multiple of 32) → Gemm(transB, bias) K=96
    → y; beside it x·xᵀ (no constant weight) and a K=4 MatMul too small to shrink."""
    rng = np.random.default_rng(0)
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h1"], name="fc1"),
        helper.make_node("MatMul", ["h1", "w2"], ["h2"], name="fc2"),
        helper.make_node("Gemm", ["h2", "w3", "b3"], ["y"], transB=1, name="head"),
        helper.make_node("Transpose", ["x"], ["xt"], name="t"),
        helper.make_node("MatMul", ["x", "xt"], ["scores"], name="scores"),
        helper.make_node("Slice", ["x", "zero", "four", "one"], ["x4"], name="slice"),
        helper.make_node("MatMul", ["x4", "w4"], ["small"], name="tiny"),
    ]
    inits = [_weight(rng, "w1", 64, 80), _weight(rng, "w2", 80, 96), _weight(rng, "w3", 48, 96),
             _weight(rng, "b3", 48), _weight(rng, "w4", 4, 8)]  # fmt: skip
    inits += [numpy_helper.from_array(np.array([v]), n) for n, v in
              (("zero", 0), ("four", 4), ("one", 1))]  # fmt: skip
    outputs = [helper.make_tensor_value_info(name, FLOAT, shape) for name, shape in
               (("y", ["n", 48]), ("scores", ["n", "n"]), ("small", ["n", 8]))]  # fmt: skip
    graph = helper.make_graph(
        nodes, "layers", [helper.make_tensor_value_info("x", FLOAT, ["n", 64])], outputs, inits
    )
    return _model(graph, opset)


def _model(graph: onnx.GraphProto, opset: int) -> onnx.ModelProto:
    return helper.make_model(graph, ir_version=10, opset_imports=[helper.make_opsetid("", opset)])


def _relative_rms(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.sqrt(np.mean((got - want) ** 2) / np.mean(want**2)))


def _exported(model: onnx.ModelProto) -> nbd.Artifact:
    x = np.random.default_rng(1).standard_normal((8, 64)).astype(np.float32)
    return nbd.export(model, x, name="layers", progress=False)


def test_constant_weight_matmuls_become_4bit_and_the_rest_is_reported() -> None:
    art = _exported(_layers())
    q = nbd.quantize(art, "int4-matmul", progress=False)
    ops = [n.op_type for n in q.onnx.graph.node]
    assert ops.count("MatMulNBits") == 3 and ops.count("Gemm") == 0  # the Gemm became one
    assert q.report.rewritten == {"MatMul → MatMulNBits": 2, "Gemm → MatMulNBits": 1}
    assert "not a constant" in q.report.kept_float["scores"]
    assert "no smaller" in q.report.kept_float["tiny"]
    # 4 bits a weight + one float32 scale per 32 (K=80 padded to 96): ~0.16 of float32
    weights = 64 * 80 + 80 * 96 + 96 * 48
    packed = sum(-(-k // 32) * (16 + 4) * n for k, n in ((64, 80), (80, 96), (96, 48)))
    assert q.size_bytes - packed < art.size_bytes - 4 * weights + 512  # the rest: as before
    assert q.report.size_ratio < 0.2
    # 4-bit error: ~20 dB SNR per weight, outputs within a few percent of their range
    assert {t.name for t in q.report.tensors} == {"w1", "w2", "w3"}
    assert all(15 < t.snr_db < 30 for t in q.report.tensors), q.report.tensors
    x = np.random.default_rng(2).standard_normal((16, 64)).astype(np.float32)
    want, got = art.run(x), q.run(x)
    assert _relative_rms(got["y"], want["y"]) < 0.2  # three 4-bit layers in a row
    np.testing.assert_array_equal(got["scores"], want["scores"])  # left alone
    assert q.parity is not None and set(q.report.output_max_abs) == {"y", "scores", "small"}
    assert "MatMul → MatMulNBits: 2" in str(q.report) and "kept float" in q.report._repr_html_()


def test_settings_reach_the_kernel_and_exclude_is_honoured() -> None:
    art = _exported(_layers())
    q = nbd.quantize(art, Int4MatMul(block_size=16, symmetric=False, accuracy_level=4),
                     exclude=["fc2"], progress=False)  # fmt: skip
    nbits = [n for n in q.onnx.graph.node if n.op_type == "MatMulNBits"]
    attrs = [{a.name: helper.get_attribute_value(a) for a in n.attribute} for n in nbits]
    assert [(a["block_size"], a["accuracy_level"]) for a in attrs] == [(16, 4)] * 3
    assert "tiny" not in q.report.kept_float  # K=4 in one 16-value block: 12 bytes, not 16
    assert all(len(n.input) == 4 for n in nbits)  # asymmetric: zero points
    assert all(t.snr_db > 20 for t in q.report.tensors)  # read back with their zero points
    assert q.report.kept_float["fc2"] == "excluded"
    assert q.report.settings["block_size"] == 16 and q.report.settings["symmetric"] is False


def test_embeddings_become_gather_block_quantized_where_the_opset_allows() -> None:
    rng = np.random.default_rng(3)

    def model(opset: int) -> onnx.ModelProto:
        graph = helper.make_graph(
            [helper.make_node("Gather", ["table", "ids"], ["e"], name="embed"),
             helper.make_node("MatMul", ["e", "w"], ["y"], name="proj")],
            "emb", [helper.make_tensor_value_info("ids", onnx.TensorProto.INT64, ["n"])],
            [helper.make_tensor_value_info("y", FLOAT, ["n", 32])],
            [_weight(rng, "table", 100, 64), _weight(rng, "w", 64, 32)],
        )  # fmt: skip
        return _model(graph, opset)

    ids = np.arange(10, dtype=np.int64)
    art = nbd.export(model(20), ids, name="emb", progress=False)
    q = nbd.quantize(art, "int4-matmul", progress=False)
    assert q.report.rewritten == {"Gather → GatherBlockQuantized": 1, "MatMul → MatMulNBits": 1}
    assert _onnxio.opset(q.onnx) == 21  # int4 tensors
    assert np.abs(q.run(ids)["y"] - art.run(ids)["y"]).max() < 0.1
    assert "embed" in nbd.quantize(art, "int4-matmul-noembed", progress=False).report.kept_float
    old = nbd.quantize(nbd.export(model(17), ids, name="emb", progress=False), "int4-matmul",
                       progress=False)  # fmt: skip
    assert "opset" in old.report.kept_float["embed"] and _onnxio.opset(old.onnx) == 17


def test_matmuls_inside_if_branches_are_left_in_float_and_said_so() -> None:
    rng = np.random.default_rng(6)

    def branch(name: str) -> onnx.GraphProto:
        out = helper.make_tensor_value_info(f"{name}_y", FLOAT, None)
        node = helper.make_node("MatMul", ["h", "w"], [out.name])
        return helper.make_graph([node], name, [], [out])

    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["h"], name="fc"),
         helper.make_node("ReduceSum", ["x"], ["total"], keepdims=0, name="sum"),
         helper.make_node("Greater", ["total", "zero"], ["positive"], name="test"),
         helper.make_node("If", ["positive"], ["y"], then_branch=branch("yes"),
                          else_branch=branch("no"), name="choose")],
        "branches", [helper.make_tensor_value_info("x", FLOAT, [1, 64])],
        [helper.make_tensor_value_info("y", FLOAT, [1, 64])],
        [_weight(rng, "w", 64, 64), numpy_helper.from_array(np.float32(0), "zero")],
    )  # fmt: skip
    art = nbd.export(_model(graph, 20), rng.standard_normal((1, 64)).astype(np.float32),
                     name="branches", progress=False)  # fmt: skip
    q = nbd.quantize(art, "int4-matmul", progress=False)
    assert q.report.rewritten == {"MatMul → MatMulNBits": 1}
    assert [v for k, v in q.report.kept_float.items()] == ["inside the body of If 'choose'"] * 2
    bodies = [a.g for n in q.onnx.graph.node if n.op_type == "If" for a in n.attribute]
    assert [n.op_type for body in bodies for n in body.node] == ["MatMul", "MatMul"]


def test_a_model_without_constant_matmul_weights_is_a_clear_error() -> None:
    rng = np.random.default_rng(4)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "k"], ["y"], name="conv")], "cnn",
        [helper.make_tensor_value_info("x", FLOAT, ["n", 1, 8, 8])],
        [helper.make_tensor_value_info("y", FLOAT, ["n", 4, 6, 6])],
        [_weight(rng, "k", 4, 1, 3, 3)],
    )  # fmt: skip
    conv = _model(graph, 17)
    art = nbd.export(conv, rng.standard_normal((2, 1, 8, 8)).astype(np.float32), name="cnn",
                     progress=False)  # fmt: skip
    with pytest.raises(nbd.ConfigError, match=r"constant weights of MatMul.*'int8-dynamic'"):
        nbd.quantize(art, "int4-matmul", progress=False)
    with pytest.raises(nbd.ConfigError, match=r"conv: a convolution: .*'int8-static'"):
        nbd.quantize(art, "int4-matmul", progress=False)


@pytest.mark.parametrize(
    "name", ["int4-matmul", "int4-matmul-b64", "int4-matmul-asym", "int4-matmul-b128-acc4",
             "int4-matmul-b16-asym-acc1-noembed"],
)  # fmt: skip
def test_scheme_names_round_trip(name: str) -> None:
    config = parse_scheme(name)
    assert isinstance(config, Int4MatMul) and config.name == name
    assert parse_scheme(config.name) == config and parse_scheme(config) is config


def test_bad_settings_say_what_to_choose() -> None:
    with pytest.raises(nbd.ConfigError, match="choose 16, 32, 64, 128, 256"):
        parse_scheme("int4-matmul-b48")
    with pytest.raises(nbd.ConfigError, match=r"choose None, 1 \(float32\)"):
        Int4MatMul(accuracy_level=5)
    assert Int4MatMul(accuracy_level=0) == Int4MatMul()  # onnxruntime's "unset"


def test_an_exported_torch_model_runs_quantized() -> None:
    torch = pytest.importorskip("torch")
    model = torch.nn.Sequential(
        torch.nn.Linear(64, 128), torch.nn.GELU(), torch.nn.Linear(128, 64)
    ).eval()
    x = torch.randn(2, 16, 64, generator=torch.Generator().manual_seed(0))
    art = nbd.export(model, x, name="mlp", progress=False)
    q = nbd.quantize(art, "int4-matmul-acc4", progress=False)
    assert sum(q.report.rewritten.values()) == 2 and len(q.report.tensors) == 2
    (want,), (got,) = art.run(x.numpy()).values(), q.run(x.numpy()).values()
    assert _relative_rms(got, want) < 0.15


def test_a_model_kept_on_disk_is_quantized_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, model = tmp_path / "model.onnx", _layers()
    onnx.save_model(model, path, save_as_external_data=True)
    on_disk = nbd.load(path)
    assert on_disk.payload.folder is not None
    in_memory = nbd.quantize(_exported(_layers()), "int4-matmul", progress=False)
    monkeypatch.setattr(_onnxio, "ON_DISK_BYTES", 1000)  # a small model stands for a big one
    q = nbd.quantize(on_disk, "int4-matmul", progress=False)
    assert q.payload.folder is not None  # still "large": kept on disk
    x = np.random.default_rng(5).standard_normal((4, 64)).astype(np.float32)
    np.testing.assert_array_equal(q.run(x)["y"], in_memory.run(x)["y"])
    assert q.report.tensors == in_memory.report.tensors  # float weights read from its files


def test_the_users_root_logger_is_left_alone() -> None:
    """onnxruntime's MatMulNBits module calls logging.basicConfig(level=INFO) on import."""
    code = (
        "import logging, numpy as np, nbdeploy as nbd\n"
        "from tests.quantization.test_int4_matmul import _exported, _layers\n"
        "nbd.quantize(_exported(_layers()), 'int4-matmul', progress=False)\n"
        "root = logging.getLogger(); print(len(root.handlers), root.level)\n"
    )
    root = Path(__file__).parents[2]
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True,
                         text=True, check=True)  # fmt: skip
    assert out.stdout.split() == ["0", str(30)] and "INFO" not in out.stderr

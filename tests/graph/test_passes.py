"""One model per rule, compared numerically with onnxruntime."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import nbdeploy as nbd
from tests.graph.helpers import assert_same_outputs, model, ops

RNG = np.random.default_rng(0)
F = np.float32


def _bn_params(c: int) -> dict[str, np.ndarray]:
    return {
        "gamma": RNG.uniform(0.5, 1.5, c).astype(F),
        "beta": RNG.uniform(-0.5, 0.5, c).astype(F),
        "mean": RNG.uniform(-0.5, 0.5, c).astype(F),
        "var": RNG.uniform(0.5, 2.0, c).astype(F),
    }


def test_conv_bn_relu_fuses_into_the_conv() -> None:
    art = model(
        """<ir_version: 8, opset_import: ["" : 17]>
        seed (float[N, 3, 8, 8] x) => (float[N, 4, 8, 8] y) {
            c = Conv <pads = [1, 1, 1, 1]> (x, w, b)
            n = BatchNormalization <epsilon = 0.001> (c, gamma, beta, mean, var)
            y = Relu (n)
        }""",
        w=RNG.standard_normal((4, 3, 3, 3)).astype(F), b=RNG.standard_normal(4).astype(F),
        **_bn_params(4),
    )  # fmt: skip
    opt = nbd.optimize(art, ["conv-bn-fusion", "dead-code-elimination"])
    assert ops(opt) == ["Conv", "Relu"]
    assert opt.report.fired("conv-bn-fusion") == {"Conv+BatchNormalization": 1}
    assert_same_outputs(art, opt, {"x": RNG.standard_normal((2, 3, 8, 8)).astype(F)})


def test_gemm_bn_fuses() -> None:
    art = model(
        """<ir_version: 8, opset_import: ["" : 17]>
        g (float[N, 5] x) => (float[N, 3] y) {
            h = Gemm <transB = 1> (x, w, b)
            y = BatchNormalization (h, gamma, beta, mean, var)
        }""",
        w=RNG.standard_normal((3, 5)).astype(F), b=RNG.standard_normal(3).astype(F),
        **_bn_params(3),
    )  # fmt: skip
    opt = nbd.optimize(art, ["conv-bn-fusion"])
    assert ops(opt) == ["Gemm"]
    assert_same_outputs(art, opt, {"x": RNG.standard_normal((4, 5)).astype(F)})


def test_standalone_batchnorm_becomes_scale_and_shift() -> None:
    art = model(
        """<ir_version: 8, opset_import: ["" : 17]>
        bn (float[N, 4, 6, 6] x) => (float[N, 4, 6, 6] y) {
            r = Relu (x)
            y = BatchNormalization <epsilon = 0.01> (r, gamma, beta, mean, var)
        }""",
        **_bn_params(4),
    )
    opt = nbd.optimize(art, ["batchnorm-to-affine"])
    assert ops(opt) == ["Relu", "Mul", "Add"]
    assert opt.report.fired("batchnorm-to-affine") == {"BatchNormalization→Mul+Add": 1}
    assert_same_outputs(art, opt, {"x": RNG.standard_normal((3, 4, 6, 6)).astype(F)})


def test_batchnorm_after_matmul_folds_into_its_weights() -> None:
    art = model(
        """<ir_version: 8, opset_import: ["" : 17]>
        mm (float[N, 5] x) => (float[N, 3] y) {
            h = MatMul (x, w)
            y = BatchNormalization (h, gamma, beta, mean, var)
        }""",
        w=RNG.standard_normal((5, 3)).astype(F), **_bn_params(3),
    )  # fmt: skip
    opt = nbd.optimize(art, ["batchnorm-to-affine", "dead-code-elimination"])
    assert ops(opt) == ["MatMul", "Add"]
    assert opt.report.fired("batchnorm-to-affine") == {"MatMul+BatchNormalization": 1}
    assert_same_outputs(art, opt, {"x": RNG.standard_normal((4, 5)).astype(F)})


def test_batchnorm_in_training_mode_is_left_alone() -> None:
    art = model(
        """<ir_version: 8, opset_import: ["" : 17]>
        t (float[2, 3, 4] x) => (float[2, 3, 4] y, float[3] m, float[3] v) {
            y, m, v = BatchNormalization <training_mode = 1> (x, gamma, beta, mean, var)
        }""",
        **_bn_params(3),
    )
    opt = nbd.optimize(art)
    assert ops(opt) == ["BatchNormalization"]


@pytest.mark.parametrize(
    ("body", "rule"),
    [
        ("y = Identity (x)", "Identity removed"),
        ("y = Dropout (x)", "Dropout (inference)"),
        ("y = Transpose <perm = [0, 1, 2]> (x)", "Transpose (identity perm)"),
        ("y = Cast <to = 1> (x)", "Cast (same type)"),
        (
            "s = Constant <value = int64[3] {-1, 3, 4}> ()\n y = Reshape (x, s)",
            "Reshape (same shape)",
        ),
    ],
)
def test_no_ops_are_removed(body: str, rule: str) -> None:
    art = model(
        f"""<ir_version: 8, opset_import: ["" : 17]>
        n (float[N, 3, 4] x) => (float[N, 3, 4] z) {{
            {body}
            z = Relu (y)
        }}"""
    )
    opt = nbd.optimize(art, ["no-op-elimination", "dead-code-elimination"])
    assert ops(opt) == ["Relu"]
    assert opt.report.fired("no-op-elimination").get(rule, 0) >= 1
    assert [i.name for i in opt.onnx.graph.input] == ["x"]
    assert_same_outputs(art, opt, {"x": RNG.standard_normal((2, 3, 4)).astype(F)})


def test_reshape_to_another_shape_and_used_dropout_mask_stay() -> None:
    art = model(
        """<ir_version: 8, opset_import: ["" : 17]>
        k (float[N, 3, 4] x) => (float[N, 12] y, bool[N, 3, 4] mask) {
            s = Constant <value = int64[2] {-1, 12}> ()
            y = Reshape (x, s)
            d, mask = Dropout (x)
        }"""
    )
    opt = nbd.optimize(art, ["no-op-elimination"])
    assert sorted(ops(opt)) == ["Constant", "Dropout", "Reshape"]


def test_identity_feeding_a_graph_output_keeps_the_output_name() -> None:
    art = model(
        """<ir_version: 8, opset_import: ["" : 17]>
        o (float[N, 2] x) => (float[N, 2] out) {
            r = Relu (x)
            out = Identity (r)
        }"""
    )
    opt = nbd.optimize(art)
    assert [o.name for o in opt.onnx.graph.output] == ["out"]
    assert ops(opt) == ["Relu"]


def test_constant_folding_and_its_size_limit() -> None:
    art = model(
        """<ir_version: 8, opset_import: ["" : 17]>
        cf (float[N, 4] x) => (float[N, 4] y, float[2000, 1000] big) {
            a = Constant <value = float[4] {1, 2, 3, 4}> ()
            b = Mul (a, a)
            y = Add (x, b)
            shape = Constant <value = int64[2] {2000, 1000}> ()
            one = Constant <value = float[1] {1}> ()
            big = Expand (one, shape)
        }"""
    )
    opt = nbd.optimize(art, ["constant-folding", "dead-code-elimination"])
    assert "Mul" not in ops(opt)
    assert "Expand" in ops(opt)  # 2M elements: past the limit, never materialized
    assert opt.report.fired("constant-folding")["nodes folded"] >= 1
    assert opt.size_bytes < 100_000
    assert_same_outputs(art, opt, {"x": RNG.standard_normal((2, 4)).astype(F)})


def test_common_subexpressions_merge_and_dead_code_goes() -> None:
    art = model(
        """<ir_version: 8, opset_import: ["" : 17]>
        cse (float[N, 4] x) => (float[N, 4] y) {
            a = Relu (x)
            b = Relu (x)
            y = Add (a, b)
            unused = Sigmoid (x)
        }""",
        orphan=np.ones(10, F),
    )  # fmt: skip
    opt = nbd.optimize(art, ["common-subexpression-elimination", "dead-code-elimination"])
    assert sorted(ops(opt)) == ["Add", "Relu"]
    assert len(opt.onnx.graph.initializer) == 0
    fired = opt.report.fired("dead-code-elimination")
    assert fired.get("initializers removed") == 1
    assert_same_outputs(art, opt, {"x": RNG.standard_normal((2, 4)).astype(F)})


_COMPUTED_CONV_BN = """<ir_version: 8, opset_import: ["" : 17]>
    computed (float[N, 3, 8, 8] x) => (float[N, 4, 8, 8] y) {
        ramp = Range (start, limit, delta)
        wave = Sin (ramp)
        w = Reshape (wave, wshape)
        ones = ConstantOfShape <value = float[1] {1.0}> (cshape)
        head = Slice (wave, s0, s4)
        small = Mul (head, tenth)
        gamma = Add (ones, small)
        spread = Abs (head)
        var = Add (ones, spread)
        c = Conv <pads = [1, 1, 1, 1]> (x, w, beta)
        n = BatchNormalization <epsilon = 0.001> (c, gamma, beta, mean, var)
        y = Relu (n)
    }"""


def _computed_conv_bn() -> nbd.Artifact:
    scalars = {"start": 0.0, "limit": 108.0, "delta": 1.0, "tenth": 0.1}
    return model(
        _COMPUTED_CONV_BN,
        **{k: np.array(v, F) for k, v in scalars.items()},
        wshape=np.array([4, 3, 3, 3]), cshape=np.array([4]),
        s0=np.array([0]), s4=np.array([4]),
        beta=RNG.uniform(-0.5, 0.5, 4).astype(F), mean=RNG.uniform(-0.5, 0.5, 4).astype(F),
    )  # fmt: skip


def test_bn_after_a_conv_with_computed_weights_fuses_by_rewriting_the_weights() -> None:
    import onnx_ir as ir

    from nbdeploy.graph.passes import count_request_nodes

    art = _computed_conv_bn()
    opt = nbd.optimize(art)
    assert opt.report.fired("conv-bn-fusion") == {"Conv+BatchNormalization (computed weights)": 1}
    before = count_request_nodes(ir.from_proto(art.onnx).graph)
    assert (before, count_request_nodes(ir.from_proto(opt.onnx).graph)) == (3, 2)
    assert opt.size_bytes <= max(1.3 * art.size_bytes, art.size_bytes + (1 << 20))
    assert_same_outputs(art, opt, {"x": RNG.standard_normal((2, 3, 8, 8)).astype(F)})


def test_computed_weights_fold_when_asked_to_fold_everything() -> None:
    from nbdeploy.graph.passes import ConstantFolding, ConvBnFusion, DeadCodeElimination

    art = _computed_conv_bn()
    passes = [ConvBnFusion(), ConstantFolding(grow_limit=1 << 20), DeadCodeElimination()]
    opt = nbd.optimize(art, passes)
    assert "Range" not in ops(opt) and ops(opt)[-2:] == ["Conv", "Relu"]
    assert_same_outputs(art, opt, {"x": RNG.standard_normal((2, 3, 8, 8)).astype(F)})


@pytest.mark.parametrize(
    ("body", "rule"),
    [
        ("y = Add (x, zeros)", "Add of zeros"),
        ("y = Add (zeros, x)", "Add of zeros"),
        ("y = Sub (x, zeros)", "Sub of zeros"),
        ("y = Mul (ones, x)", "Mul by ones"),
        ("y = Div (x, ones)", "Div by ones"),
    ],
)
def test_a_bias_of_zeros_or_a_scale_of_ones_goes(body: str, rule: str) -> None:
    art = model(
        f"""<ir_version: 8, opset_import: ["" : 17]>
        n (float[N, 3, 4] x) => (float[N, 3, 4] z) {{
            {body}
            z = Relu (y)
        }}""",
        zeros=np.zeros(4, F), ones=np.ones((3, 1), F),
    )  # fmt: skip
    opt = nbd.optimize(art, ["no-op-elimination", "dead-code-elimination"])
    assert ops(opt) == ["Relu"]
    assert opt.report.fired("no-op-elimination")[rule] == 1
    assert_same_outputs(art, opt, {"x": RNG.standard_normal((2, 3, 4)).astype(F)})


def test_a_neutral_constant_that_broadcasts_the_input_stays() -> None:
    art = model(
        """<ir_version: 8, opset_import: ["" : 17]>
        n (float[N, 1, 4] x) => (float[N, 3, 4] y, float[N, 1, 4] z) {
            y = Add (x, zeros)
            z = Mul (x, half)
        }""",
        zeros=np.zeros((3, 4), F), half=np.full(4, 0.5, F),
    )  # fmt: skip
    opt = nbd.optimize(art, ["no-op-elimination"])
    assert ops(opt) == ["Add", "Mul"]


def test_a_transpose_of_unit_axes_becomes_a_reshape_merged_with_the_next() -> None:
    art = model(
        """<ir_version: 8, opset_import: ["" : 17]>
        t (float[12, 1, N, 16] x) => (float[12, N, 16] y) {
            t = Transpose <perm = [0, 2, 1, 3]> (x)
            s = Constant <value = int64[3] {12, -1, 16}> ()
            y = Reshape (t, s)
        }"""
    )
    opt = nbd.optimize(art, ["shape-simplification", "dead-code-elimination"])
    assert ops(opt) == ["Reshape"]
    assert_same_outputs(art, opt, {"x": RNG.standard_normal((12, 1, 2, 16)).astype(F)})


def test_a_transpose_that_reorders_real_axes_stays() -> None:
    art = model(
        """<ir_version: 8, opset_import: ["" : 17]>
        t (float[2, 1, N, 16] x) => (float[16, 1, N, 2] y) {
            y = Transpose <perm = [3, 1, 2, 0]> (x)
        }"""
    )
    assert ops(nbd.optimize(art, ["shape-simplification"])) == ["Transpose"]


@pytest.mark.parametrize(("first", "second"), [([1, 2], [3]), ([0], [-1, 1]), ([-1], [0, 2])])
def test_unsqueezes_of_any_axes_merge(first: list[int], second: list[int]) -> None:
    art = model(
        f"""<ir_version: 8, opset_import: ["" : 17]>
        u (float[N, 5] x) => (float[?, ?, ?, ?, ?] y) {{
            a = Constant <value = int64[{len(first)}] {{{", ".join(map(str, first))}}}> ()
            b = Constant <value = int64[{len(second)}] {{{", ".join(map(str, second))}}}> ()
            m = Unsqueeze (x, a)
            y = Unsqueeze (m, b)
        }}"""
    )
    opt = nbd.optimize(art, ["shape-simplification", "dead-code-elimination"])
    assert ops(opt) == ["Unsqueeze"]
    assert_same_outputs(art, opt, {"x": RNG.standard_normal((2, 5)).astype(F)})


def test_a_shape_computed_by_arithmetic_on_dims_becomes_a_constant() -> None:
    """The chain an exporter writes after a GRU: [12, N, 1, 16] → [12, N, 1·16]; onnx's
    inference leaves the product unknown, the symbolic inference proves it."""
    art = model(
        """<ir_version: 8, opset_import: ["" : 17]>
        g (float[12, N, 1, 16] x) => (float[12, N, 16] y) {
            s = Shape (x)
            d0 = Slice (s, i0, i1)
            d1 = Slice (s, i1, i2)
            d2 = Slice (s, i2, i3)
            d3 = Slice (s, i3, i4)
            p = Mul (d2, d3)
            t = Concat <axis = 0> (d0, d1, p)
            y = Reshape (x, t)
        }""",
        **{f"i{k}": np.array([k]) for k in range(5)},
    )  # fmt: skip
    opt = nbd.optimize(art, ["shape-simplification", "dead-code-elimination"])
    assert ops(opt) == ["Reshape"]
    fired = opt.report.fired("shape-simplification")
    assert fired["shape values proven constant"] >= 1
    assert_same_outputs(art, opt, {"x": RNG.standard_normal((12, 3, 1, 16)).astype(F)})


def test_a_model_the_symbolic_inference_cannot_handle_is_left_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import onnx_ir as ir
    from onnx import helper

    from nbdeploy.graph.passes.symbolic_shapes import prove

    monkeypatch.chdir(tmp_path)  # onnxruntime's own call saves the model here when it fails

    node = helper.make_node("Mystery", ["x"], ["y"], domain="custom.ops")
    graph = helper.make_graph(
        [node], "g",
        [helper.make_tensor_value_info("x", 1, ["N", 4])],
        [helper.make_tensor_value_info("y", 1, None)],
    )  # fmt: skip
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("custom.ops", 1)]
    assert prove(ir.from_proto(helper.make_model(graph, opset_imports=opsets))) is None
    assert list(tmp_path.iterdir()) == []  # and it wrote nothing where it ran


def _big_computed_weight() -> nbd.Artifact:
    """A 4 MB weight computed by Range → Reshape: a few bytes of graph."""
    return model(
        """<ir_version: 8, opset_import: ["" : 17]>
        big (float[N, 1024] x) => (float[N, 1024] y) {
            ramp = Range (start, limit, delta)
            w = Reshape (ramp, shape)
            y = MatMul (x, w)
        }""",
        start=np.array(0.0, F), limit=np.array(1024.0 * 1024, F), delta=np.array(1.0, F),
        shape=np.array([1024, 1024]),
    )  # fmt: skip


def test_a_pass_that_would_bloat_the_file_is_rolled_back_unless_growth_is_allowed() -> None:
    from nbdeploy.graph.passes import ConstantFolding

    art = _big_computed_weight()
    opt = nbd.optimize(art, [ConstantFolding(grow_limit=1 << 24)], atol=1, rtol=1e-3)
    record = opt.report.passes[0]
    assert "skipped" in record.note and "allow_growth=True" in record.note
    assert opt.size_bytes < 4096 and "Range" in ops(opt)
    folded = nbd.optimize(
        art, [ConstantFolding(grow_limit=1 << 24)], atol=1, rtol=1e-3, allow_growth=True
    )
    assert folded.size_bytes > 4_000_000 and "Range" not in ops(folded)


@pytest.mark.parametrize(
    ("after", "c"),
    [
        ("Mul (conv, c)", RNG.uniform(0.5, 2, (4, 1, 1)).astype(F)),
        ("Add (conv, c)", RNG.uniform(-1, 1, (1, 4, 1, 1)).astype(F)),
        ("Mul (conv, c)", np.array([3.0], F)),
    ],
)
def test_a_per_channel_mul_or_add_after_a_conv_with_computed_weights_folds(
    after: str, c: np.ndarray
) -> None:
    import onnx_ir as ir

    from nbdeploy.graph.passes import count_request_nodes

    art = model(
        f"""<ir_version: 8, opset_import: ["" : 17]>
        ca (float[N, 3, 8, 8] x) => (float[N, 4, 8, 8] y) {{
            ramp = Range (start, limit, delta)
            scaled = Mul (ramp, tenth)
            w = Reshape (scaled, wshape)
            conv = Conv <pads = [1, 1, 1, 1]> (x, w)
            y = {after}
        }}""",
        start=np.array(0.0, F), limit=np.array(108.0, F), delta=np.array(1.0, F),
        tenth=np.array(0.01, F), wshape=np.array([4, 3, 3, 3]), c=c,
    )  # fmt: skip
    opt = nbd.optimize(art)
    assert count_request_nodes(ir.from_proto(opt.onnx).graph) == 1
    assert sum(opt.report.fired("conv-bn-fusion").values()) == 1
    assert_same_outputs(art, opt, {"x": RNG.standard_normal((2, 3, 8, 8)).astype(F)})


def test_a_mul_that_is_not_per_channel_stays() -> None:
    art = model(
        """<ir_version: 8, opset_import: ["" : 17]>
        ca (float[N, 3, 8, 8] x) => (float[N, 4, 8, 8] y) {
            conv = Conv <pads = [1, 1, 1, 1]> (x, w)
            y = Mul (conv, c)
        }""",
        w=RNG.standard_normal((4, 3, 3, 3)).astype(F), c=RNG.standard_normal((4, 8, 8)).astype(F),
    )  # fmt: skip
    assert nbd.optimize(art, ["conv-bn-fusion"]).report.fired("conv-bn-fusion") == {}


def test_a_gemm_with_bias_and_beta_takes_a_following_mul_and_add() -> None:
    art = model(
        """<ir_version: 8, opset_import: ["" : 17]>
        ga (float[N, 5] x) => (float[N, 3] y) {
            g = Gemm <transB = 1, beta = 0.5> (x, w, b)
            m = Mul (g, s)
            y = Add (m, t)
        }""",
        w=RNG.standard_normal((3, 5)).astype(F), b=RNG.standard_normal(3).astype(F),
        s=RNG.uniform(0.5, 2, 3).astype(F), t=RNG.standard_normal(3).astype(F),
    )  # fmt: skip
    opt = nbd.optimize(art)
    assert ops(opt) == ["Gemm"]
    assert_same_outputs(art, opt, {"x": RNG.standard_normal((4, 5)).astype(F)})


def test_a_shape_read_from_an_overridable_initializer_is_not_taken_as_fixed() -> None:
    """An initializer that is also a graph input is a default a request may replace."""
    import onnx_ir as ir
    from onnx import helper, numpy_helper

    from nbdeploy.graph.passes.symbolic_shapes import prove

    nodes = [
        helper.make_node("Concat", ["rows", "cols"], ["target"], axis=0),
        helper.make_node("Reshape", ["x", "target"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes, "g",
        [helper.make_tensor_value_info("x", 1, [6]), helper.make_tensor_value_info("rows", 7, [1])],
        [helper.make_tensor_value_info("y", 1, None)],
        [numpy_helper.from_array(np.array([n]), name) for n, name in ((2, "rows"), (3, "cols"))],
    )  # fmt: skip
    facts = prove(
        ir.from_proto(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    )
    assert facts is not None and "target" not in facts.numbers


def test_a_per_column_mul_after_a_matmul_with_a_computed_weight_folds() -> None:
    art = model(
        """<ir_version: 8, opset_import: ["" : 17]>
        mm (float[N, 7, 4] x) => (float[N, 7, 3] y) {
            ramp = Range (start, limit, delta)
            w = Reshape (ramp, wshape)
            h = MatMul (x, w)
            y = Mul (h, s)
        }""",
        start=np.array(0.0, F), limit=np.array(12.0, F), delta=np.array(1.0, F),
        wshape=np.array([4, 3]), s=RNG.uniform(0.5, 2, 3).astype(F),
    )  # fmt: skip
    opt = nbd.optimize(art)
    assert opt.report.fired("conv-bn-fusion") == {"MatMul+Mul (constant per channel)": 1}
    assert_same_outputs(art, opt, {"x": RNG.standard_normal((2, 7, 4)).astype(F)})

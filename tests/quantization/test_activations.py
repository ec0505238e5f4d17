"""nbd.activations on real onnxruntime: per-tensor drift of quantized and optimized
variants, on small models built from ONNX text."""

from __future__ import annotations

import json
import math

import numpy as np
import onnx
import onnx.parser
import pytest

import nbdeploy as nbd
from nbdeploy import _onnxio

RNG = np.random.default_rng(0)


def _artifact(text: str, example: np.ndarray, **weights: np.ndarray) -> nbd.Artifact:
    proto = onnx.parser.parse_model(text)
    for name, value in weights.items():
        proto.graph.initializer.append(onnx.numpy_helper.from_array(value.astype(np.float32), name))
    for node in proto.graph.node:
        node.name = f"{node.op_type.lower()}_{node.output[0]}"
    return nbd.export(proto, example, name=proto.graph.name)


@pytest.fixture(scope="module")
def cnn() -> nbd.Artifact:
    """Conv → BatchNorm → Relu → Conv → Relu → pool → Gemm."""
    text = """<ir_version: 8, opset_import: ["" : 17]>
    cnn (float[batch, 3, 8, 8] x) => (float[batch, 4] y) {
      c1 = Conv <pads=[1,1,1,1]> (x, K1, KB1)
      n1 = BatchNormalization (c1, S, Bi, M, V)
      r1 = Relu (n1)
      c2 = Conv <pads=[1,1,1,1]> (r1, K2)
      r2 = Relu (c2)
      p = GlobalAveragePool (r2)
      f = Flatten (p)
      y = Gemm <transB=1> (f, G, GB) }"""
    n = RNG.standard_normal
    return _artifact(
        text, n((8, 3, 8, 8)).astype(np.float32), K1=n((8, 3, 3, 3)), KB1=n(8),
        S=RNG.uniform(0.5, 2, 8), Bi=n(8), M=n(8), V=RNG.uniform(0.5, 2, 8),
        K2=n((8, 8, 3, 3)) * 0.2, G=n((4, 8)), GB=n(4),
    )  # fmt: skip


@pytest.fixture(scope="module")
def outlier() -> nbd.Artifact:
    """Three MatMul layers; the second's weights hold one huge row that only a dead
    hidden unit reads: harmless in float, it ruins that layer's per-tensor int8 scale."""
    text = """<ir_version: 8, opset_import: ["" : 17]>
    mlp (float[batch, 16] x) => (float[batch, 8] y) {
      a = MatMul (x, W1)
      b = Add (a, B1)
      h1 = Relu (b)
      c = MatMul (h1, W2)
      h2 = Relu (c)
      y = MatMul (h2, W3) }"""
    bias = np.zeros(32)
    bias[0] = -1000  # hidden unit 0 never fires
    w2 = RNG.standard_normal((32, 32)) * 0.3
    w2[0, :] = 200
    return _artifact(text, RNG.standard_normal((8, 16)).astype(np.float32),
                     W1=RNG.standard_normal((16, 32)), B1=bias, W2=w2,
                     W3=RNG.standard_normal((32, 8)) * 0.3)  # fmt: skip


@pytest.mark.parametrize("scheme", ["int8-static", "int8-dynamic", "fp16"])
def test_quantized_tensors_drift_and_come_in_topological_order(scheme: str, cnn) -> None:  # type: ignore[no-untyped-def]
    q = nbd.quantize(cnn, scheme, calibration=cnn.example)
    report = nbd.activations(cnn, q)
    graph = cnn.onnx.graph
    order = [graph.node[i].output[0] for i in _onnxio.topological_order(graph)]
    matched = [t.tensor for t in report.tensors]
    assert matched == [t for t in order if t in matched]  # the reference's order
    assert [t.depth for t in report.tensors] == sorted(t.depth for t in report.tensors)
    assert len(matched) + len(report.unmatched) == len(order)
    assert len(matched) >= 5 and "y" in matched
    assert all(math.isfinite(t.sqnr_db) and t.sqnr_db > 20 for t in report.tensors)
    assert any(not t.identical for t in report.tensors)
    if scheme == "int8-static":  # QDQ: onnxruntime's pre/post-QDQ matching
        qdq = [t for t in report.tensors if t.matched_by == "qdq"]
        assert qdq and all((t.qdq_sqnr_db is None) == bool(t.fused_with) for t in qdq)
        assert {t.fused_with for t in qdq} >= {None, "batchnormalization_n1"}  # BN+Relu fold
        assert any(t.variant_tensor.endswith("_DequantizeLinear_Output") for t in qdq)
    else:  # dynamic and fp16 keep the activations' names: every tensor matches
        assert report.unmatched == ()
    itself = nbd.activations(cnn, cnn)
    assert all(t.identical and t.sqnr_db == math.inf for t in itself.tensors)
    assert itself.first_divergence is None and itself.unmatched == () and itself.worst() == []
    assert max(t.sqnr_db for t in report.tensors) < min(t.sqnr_db for t in itself.tensors)
    assert report.first_divergence is None  # a healthy model: nothing below 30 dB


@pytest.mark.parametrize("scheme", ["int8-dynamic", "int8-weight-symmetric"])
def test_the_badly_quantized_layer_is_named_first(scheme: str, outlier) -> None:  # type: ignore[no-untyped-def]
    q = nbd.quantize(outlier, scheme, per_channel=False)
    report = nbd.activations(outlier, q)
    bad = report.worst()[0]
    assert (bad.tensor, bad.node) == ("c", "matmul_c")
    assert report.first_divergence == bad
    assert bad.sqnr_db < 5 and bad.sqnr_db <= min(t.sqnr_db for t in report.tensors) + 0.5
    upstream = [t for t in report.tensors if t.depth < bad.depth]
    assert upstream and all(t.sqnr_db > 30 for t in upstream)
    assert "first differ at c (node matmul_c)" in str(report)
    # What the report is for: keep the named node in float, and the damage is gone.
    kept = nbd.quantize(outlier, scheme, per_channel=False, exclude=[bad.node, "W2"])
    assert nbd.activations(outlier, kept).first_divergence is None


def test_a_fold_by_the_qdq_quantizer_names_both_nodes(outlier) -> None:  # type: ignore[no-untyped-def]
    """onnxruntime's QDQ quantizer folds each Relu into the op before it, which then
    writes the Relu's output: the damage of matmul_c shows at h2, under both names."""
    q = nbd.quantize(outlier, "int8-static", calibration=outlier.example, per_channel=False)
    report = nbd.activations(outlier, q)
    first = report.first_divergence
    assert first is not None and report.worst()[0] == first
    assert (first.tensor, first.fused_with, first.nodes) == ("h2", "matmul_c", "matmul_c + relu_h2")
    assert first.matched_by == "qdq" and first.variant_tensor == "h2_DequantizeLinear_Output"
    assert first.qdq_sqnr_db is None  # pre-QDQ h2 is matmul_c's output: no step of its own
    a = next(t for t in report.tensors if t.tensor == "a")
    assert a.fused_with is None and a.qdq_sqnr_db is not None and a.qdq_sqnr_db > 30
    reasons = {u.tensor: u.reason for u in report.unmatched}
    assert reasons == {"b": "its node was folded into the one making h1",
                       "c": "its node was folded into the one making h2"}  # fmt: skip
    assert "first differ at h2 (node matmul_c + relu_h2)" in str(report)


def test_optimize_leaves_only_fused_tensors_unmatched(cnn) -> None:  # type: ignore[no-untyped-def]
    report = nbd.activations(cnn, nbd.optimize(cnn))
    # BatchNorm folds into the Conv before it, whose output takes the BatchNorm's name.
    assert [(u.tensor, u.node) for u in report.unmatched] == [("c1", "conv_c1")]
    assert report.unmatched[0].reason == "its node was folded into the one making n1"
    n1 = next(t for t in report.tensors if t.tensor == "n1")
    assert (n1.fused_with, n1.nodes) == ("conv_c1", "conv_c1 + batchnormalization_n1")
    assert len(report.tensors) == 7 and all(t.identical for t in report.tensors)
    assert report.first_divergence is None and "no tensor's SQNR falls below 30 dB" in str(report)


def test_the_report_reads_keeps_and_plots(outlier) -> None:  # type: ignore[no-untyped-def]
    from matplotlib.figure import Figure

    report = nbd.activations(outlier, nbd.quantize(outlier, "int8-dynamic", per_channel=False))
    html = report._repr_html_()
    assert "<table>" in html and "▶ c" in html and "the outputs first differ at c" in html
    assert repr(report).startswith("<ActivationReport ") and "first differ at c" in repr(report)
    assert html.index("▶ c") < html.index('<td style="text-align:left">a</td>')  # by damage
    back = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert nbd.ActivationReport.from_dict(back) == report
    figure = report.plot()
    assert isinstance(figure, Figure)
    assert len(figure.axes[0].lines[0].get_xdata()) == len(report.tensors)
    assert figure._repr_png_().startswith(b"\x89PNG")


def test_data_rows_and_groups(cnn) -> None:  # type: ignore[no-untyped-def]
    q = nbd.quantize(cnn, "int8-dynamic")
    x = RNG.standard_normal((20, 3, 8, 8)).astype(np.float32)
    whole = nbd.activations(cnn, q, x, rows=20)
    assert whole.data == "data, 20 rows"
    assert nbd.activations(cnn, q, x, rows=20, per_run=2) == whole  # fetched 2 at a time
    assert nbd.activations(cnn, q).data == "example, 8 rows"
    assert nbd.activations(cnn, q, x, rows=3).data == "data, 3 rows"


def test_mistakes_are_clear_errors(cnn, outlier) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(nbd.ConfigError, match="take different inputs"):
        nbd.activations(cnn, outlier)
    with pytest.raises(nbd.ConfigError, match="at least 1"):
        nbd.activations(cnn, cnn, rows=0)
    with pytest.raises(nbd.ExampleError):
        nbd.activations(cnn, cnn, RNG.standard_normal((2, 5)).astype(np.float32))


def test_models_kept_on_disk_are_compared_without_reading_them_whole(
    tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    from nbdeploy.payloads import OnnxPayload

    from .test_on_disk import _in_memory, _model, _on_disk

    model = _model(np.random.default_rng(1), embedding=False)
    x = RNG.standard_normal((4, 48)).astype(np.float32)
    memory = _in_memory(model, tmp_path)
    want = nbd.activations(memory, nbd.quantize(memory, "int8-dynamic", progress=False), x)
    disk = _on_disk(model, tmp_path)
    q = nbd.quantize(disk, "int8-dynamic", progress=False)
    monkeypatch.setattr(OnnxPayload, "whole", lambda self: pytest.fail("read whole"))
    got = nbd.activations(disk, q, x)
    assert [t.tensor for t in got.tensors] == [t.tensor for t in want.tensors] == [
        "h", "r", "a", "b", "y"]  # fmt: skip
    for g, w in zip(got.tensors, want.tensors, strict=True):
        assert g.sqnr_db == pytest.approx(w.sqnr_db, abs=0.5)


def test_the_quantize_report_shows_the_worst_tensors_lazily(outlier) -> None:  # type: ignore[no-untyped-def]
    q = nbd.quantize(outlier, "int8-dynamic", per_channel=False)
    assert q.report._kept == {}  # quantize itself runs nothing more
    html = q.report._repr_html_()
    assert "Where the outputs drift" in html and "matmul_c" in html
    assert q.report.activations() is q.report.activations()  # computed once, kept
    assert q.report.activations() == nbd.activations(outlier, q)
    assert q.report.activations(outlier.example["x"][:2]).data == "data, 2 rows"


def test_the_quantize_report_never_keeps_its_input_alive() -> None:
    import gc
    import pickle

    text = """<ir_version: 8, opset_import: ["" : 17]>
    mm (float[batch, 64] x) => (float[batch, 32] y) { y = MatMul (x, W) }"""
    art = _artifact(text, RNG.standard_normal((4, 64)).astype(np.float32),
                    W=RNG.standard_normal((64, 32)))  # fmt: skip
    q = nbd.quantize(art, "fp16")
    back = pickle.loads(pickle.dumps(q))  # artifacts pickle; the report's origin does not
    assert back.report == q.report and back.report.source() is None
    with pytest.raises(nbd.ArtifactError, match="no longer in memory"):
        back.report.activations()
    del art
    gc.collect()
    assert "nbd.activations(original, q)" in q.report._repr_html_()
    with pytest.raises(nbd.ArtifactError, match=r"call nbd.activations\(original, quantized\)"):
        q.report.activations()


def test_sqnr_is_onnxruntimes_formula_infinite_when_equal() -> None:
    from onnxruntime.quantization.qdq_loss_debug import (
        compute_signal_to_quantization_noice_ratio as ort_sqnr,
    )

    from nbdeploy.graph.activation_match import sqnr_db

    x = RNG.standard_normal((4, 16)).astype(np.float32)
    y = x + RNG.standard_normal((4, 16)).astype(np.float32) * 0.01
    assert sqnr_db(x, y) == pytest.approx(ort_sqnr(x, y), abs=1e-3)
    assert sqnr_db(x, x) == math.inf
    zero = np.zeros_like(x)
    assert math.isfinite(sqnr_db(zero, y)) and sqnr_db(zero, y) < -200  # as onnxruntime's


def test_a_channel_rounded_away_shows_in_the_worst_channel_not_the_whole_tensor() -> None:
    """One int8 scale for a tensor with a channel 1000× the others rounds those to zero:
    the tensor's SQNR, dominated by the outlier, looks fine; its worst channel does not.
    A nearly silent channel with a little noise is not counted as lost."""
    from nbdeploy.graph.activation_match import channel_sqnr_db, sqnr_db

    ref = RNG.uniform(0, 1, (8, 4, 5, 5))
    ref[:, 0] *= 1000
    step = ref.max() / 255
    rounded = np.round(ref / step) * step
    assert sqnr_db(ref, rounded) > 40 and channel_sqnr_db(ref, rounded) < 3
    quiet = RNG.uniform(0, 1, (8, 4, 5, 5))
    quiet[:, 1] *= 1e-6  # an almost dead channel, noise at 1e-4 of the typical signal
    noisy = quiet + RNG.normal(0, 1e-4, quiet.shape) * (np.arange(4) == 1).reshape(1, 4, 1, 1)
    assert channel_sqnr_db(quiet, noisy) > 60

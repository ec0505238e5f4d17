from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest

import nbdeploy as nbd
from nbdeploy.graph.passes import CountingPass
from tests import zoo
from tests.graph.helpers import assert_same_outputs, model, ops

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def unfused() -> nbd.Artifact:
    """The seed network as traced: Conv → BatchNormalization → Relu, nothing folded."""
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((2, 1, 8, 8), dtype=np.float32))
    return nbd.export(zoo.seeded(zoo.ConvBnNet()), x, name="seed", exporter_optimize=False)


def test_default_pipeline_on_the_seed_network(unfused: nbd.Artifact) -> None:
    assert ops(unfused).count("BatchNormalization") == 2
    opt = nbd.optimize(unfused)
    assert "BatchNormalization" not in ops(opt) and ops(opt).count("Conv") == 2
    report = opt.report
    assert [p.name for p in report.passes] == list(nbd.graph.optimize.DEFAULT_PASSES)
    assert report.fired("conv-bn-fusion") == {"Conv+BatchNormalization": 2}
    assert report.nodes_after < report.nodes_before
    assert opt.parity is not None and opt.parity.ok
    assert opt.lineage.steps[-1].kind == "optimize"
    assert ops(unfused).count("BatchNormalization") == 2  # the input is untouched
    x = np.random.default_rng(1).standard_normal((5, 1, 8, 8), dtype=np.float32)
    assert_same_outputs(unfused, opt, {"image": x})
    text, html = str(report), report._repr_html_()
    assert "Conv+BatchNormalization ×2" in text and "conv-bn-fusion" in html


def test_ort_offline_optimizer_is_a_reported_pass(unfused: nbd.Artifact) -> None:
    opt = nbd.optimize(unfused, level="ort-extended")
    last = opt.report.passes[-1]
    assert last.name == "ort-extended" and "nodes fused or removed" in last.fired
    assert opt.parity is not None and opt.parity.ok


class _Sabotage(CountingPass):
    """A pass that silently changes a weight: what the parity check exists to catch."""

    name = "sabotage"

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        weight = next(iter(model.graph.initializers.values()))
        weight.const_value = ir.tensor(weight.const_value.numpy() + 1.0)
        self.record("weights changed", 1)
        return ir.passes.PassResult(model, True)


def test_a_pass_that_changes_answers_is_named_and_nothing_is_returned(unfused) -> None:
    with pytest.raises(nbd.OptimizationError) as info:
        nbd.optimize(
            unfused, ["no-op-elimination", "conv-bn-fusion", _Sabotage(), "dead-code-elimination"]
        )
    err = info.value
    assert err.pass_name == "sabotage"
    assert "pass 'sabotage' is responsible" in str(err)
    assert err.artifact is unfused  # type: ignore[attr-defined]


def test_unknown_pass_and_level_list_the_valid_ones(unfused) -> None:
    with pytest.raises(nbd.ConfigError, match="the passes are: no-op-elimination"):
        nbd.optimize(unfused, ["conv-bn"])
    with pytest.raises(nbd.ConfigError, match="choose one of default, none"):
        nbd.optimize(unfused, level="max")


def test_control_flow_strings_and_integers_pass_through() -> None:
    art = model(
        """<ir_version: 8, opset_import: ["" : 17]>
        cf (bool cond, float[N, 2] x, string[N] words, int64[N] ids) =>
           (float[N, 2] y, string[N] w, int64[N] i) {
            y = If (cond) <
                then_branch = t () => (float[N, 2] a) { one = Identity (x)  a = Relu (one) },
                else_branch = e () => (float[N, 2] b) { b = Neg (x) }
            >
            w = Identity (words)
            two = Constant <value = int64[1] {2}> ()
            i = Mul (ids, two)
        }"""
    )
    opt = nbd.optimize(art)
    assert [i.name for i in opt.onnx.graph.input] == ["cond", "x", "words", "ids"]
    for cond in (True, False):
        feed = {
            "cond": np.array(cond), "x": np.array([[1.0, -2.0]], np.float32),
            "words": np.array(["a"], dtype=object), "ids": np.array([3]),
        }  # fmt: skip
        assert_same_outputs(art, opt, feed)


def test_transformer_optimizes_with_parity() -> None:
    model_ = zoo.seeded(zoo.TinyTransformer())
    example = {
        "input_ids": torch.randint(0, 100, (2, 9)),
        "attention_mask": torch.ones(2, 9, dtype=torch.int64),
    }
    art = nbd.export(model_, example, exporter_optimize=False)
    opt = nbd.optimize(art)
    assert opt.report.nodes_after < opt.report.nodes_before
    assert opt.parity is not None and opt.parity.ok


def test_inspect_counts_ops_weights_and_macs(unfused: nbd.Artifact) -> None:
    summary = nbd.inspect(unfused)
    assert summary.ops["Conv"] == 2 and summary.ops["BatchNormalization"] == 2
    assert summary.parameters > 1000 and "float32" in summary.parameter_bytes
    # conv1 1→8 3×3 on 8×8, conv2 8→16 3×3 on 8×8 (+ the linear 64→10 where its shape is known)
    assert summary.macs in (8 * 64 * 9 + 16 * 64 * 72, 8 * 64 * 9 + 16 * 64 * 72 + 64 * 10)
    assert summary.largest[0][3] >= summary.largest[-1][3]
    assert summary.to_dict()["nodes"] == summary.nodes
    assert "Conv ×2" in str(summary) and "<table>" in summary._repr_html_()


def test_diff_shows_what_optimize_changed(unfused: nbd.Artifact) -> None:
    opt = nbd.optimize(unfused)
    change = nbd.diff(unfused, opt)
    assert change.op_deltas["BatchNormalization"] == -2
    assert change.nodes_after < change.nodes_before and change.removed
    assert change.fused["conv-bn-fusion: Conv+BatchNormalization"] == 2
    assert change.weight_bytes[1] < change.weight_bytes[0]
    assert change.max_abs < 1e-4
    assert "BatchNormalization -2" in str(change) and "Diff" in change._repr_html_()
    # the variants by what they are, not the one name they share
    assert (change.a, change.b) == (unfused.name, f"{unfused.name} [optimize]")
    assert f"Diff {unfused.name} → {unfused.name} [optimize]" in change._repr_html_()

"""``nbd.quantize(..., max_drop=)`` on a model plain int8 ruins: the digits CNN with one
channel of its second block 1000× larger than the rest (as large language models'
activations have), so one int8 scale per activation tensor rounds the others to zero."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

import nbdeploy as nbd
from nbdeploy.errors import ConfigError
from nbdeploy.examples import Digits
from nbdeploy.quantization import BudgetReport

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def outlier_cnn(digits: Any) -> nbd.Artifact:
    from nbdeploy import examples

    model = examples.train_digits_cnn(digits, outlier=1000.0)
    return nbd.optimize(nbd.export(model, _images(digits.x_val[:8]), name="outlier-cnn"),
                        progress=False)  # fmt: skip


_images = Digits.images


def _accuracy(art: nbd.Artifact, digits: Any) -> float:
    (scores,) = art.run(_images(digits.x_val)).values()
    return float(np.mean(scores.argmax(-1) == digits.y_val) * 100)


def test_plain_int8_loses_more_than_the_budget_on_the_outlier_model(
    outlier_cnn: nbd.Artifact, digits: Any
) -> None:
    """The premise: without a budget, int8-static costs this model tens of points."""
    q = nbd.quantize(
        outlier_cnn, "int8-static", calibration=_images(digits.x_train[:256]), progress=False
    )
    assert _accuracy(outlier_cnn, digits) - _accuracy(q, digits) > 5


def test_a_budget_is_met_by_keeping_the_most_damaging_nodes_in_float(
    outlier_cnn: nbd.Artifact, digits: Any
) -> None:
    q = nbd.quantize(outlier_cnn, "int8-static", calibration=_images(digits.x_train[:256]),
                     max_drop=0.5, data=(_images(digits.x_val), digits.y_val),
                     progress=False)  # fmt: skip
    assert q.report is not None and q.report.budget is not None
    budget = q.report.budget
    assert budget.met
    reference = _accuracy(outlier_cnn, digits)
    # The report's numbers are the returned model's: measured again here, independently.
    assert budget.reference_metric == pytest.approx(reference)
    assert budget.steps[budget.chosen].metric == pytest.approx(_accuracy(q, digits))
    assert reference - _accuracy(q, digits) <= 0.5
    # Some nodes stayed float, the first attempt (everything quantized) did not fit, and
    # the returned model still quantizes something: smaller than the float one.
    assert budget.kept_float and not budget.steps[0].fits and not budget.steps[0].kept_float
    assert set(budget.kept_float) <= {node for group in budget.ranking for node in group}
    assert q.lineage.steps[-1].detail["exclude"] == list(budget.kept_float)
    assert q.size_bytes < outlier_cnn.size_bytes
    assert set(budget.latency_ms) == {"unquantized", "all quantized", "chosen"}
    # The shortest prefix of the ranking: one group fewer was tried and did not fit.
    groups = [g for g in budget.ranking if set(g) <= set(budget.kept_float)]
    assert [n for g in budget.ranking[: len(groups)] for n in g] == list(budget.kept_float)
    one_fewer = tuple(n for g in groups[:-1] for n in g)
    assert [s.fits for s in budget.steps if s.kept_float == one_fewer] == [False]


def test_the_budget_report_reads_in_text_html_and_json(
    outlier_cnn: nbd.Artifact, digits: Any
) -> None:
    q = nbd.quantize(outlier_cnn, "int8-static", calibration=_images(digits.x_train[:256]),
                     max_drop=1.0, data=(_images(digits.x_val), digits.y_val),
                     progress=False)  # fmt: skip
    assert q.report is not None and isinstance(q.report.budget, BudgetReport)
    kept = q.report.budget.kept_float
    text, html = str(q.report), q.report._repr_html_()
    assert "accuracy drop ≤ 1: met with" in text
    assert repr(q.report.budget).startswith("<BudgetReport accuracy drop ≤ 1: met with")
    assert all(node in text and node in html for node in kept)
    assert "Accuracy budget" in html and "over budget" in html
    saved = json.loads(json.dumps(q.report.to_dict()))
    assert saved["budget"]["met"] is True and saved["budget"]["kept_float"] == list(kept)


def test_a_model_already_within_budget_is_quantized_whole(
    digits_cnn: nbd.Artifact, digits: Any
) -> None:
    """A budget int8 meets at once (the CNN without an outlier) costs one attempt and
    keeps nothing in float."""
    q = nbd.quantize(digits_cnn, "int8-static", calibration=_images(digits.x_train[:256]),
                     max_drop=1.0,
                     data=(_images(digits.x_val), digits.y_val), progress=False)  # fmt: skip
    assert q.report is not None and q.report.budget is not None
    assert len(q.report.budget.steps) == 1 and q.report.budget.kept_float == ()
    assert q.report.budget.ranking == ()


def test_a_budget_missed_warns_says_why_and_returns_the_smallest_drop(
    outlier_cnn: nbd.Artifact, digits: Any
) -> None:
    """Nodes without names cannot be named in ``exclude=``: none can stay float, the
    budget is missed, and the warning says so rather than returning silently."""
    import onnx

    model = onnx.ModelProto()
    model.CopyFrom(outlier_cnn.onnx)
    for node in model.graph.node:
        node.name = ""
    unnamed = outlier_cnn.derive(model, step="strip node names")
    with pytest.warns(UserWarning, match="MISSED.*no names"):
        q = nbd.quantize(unnamed, "int8-static", calibration=_images(digits.x_train[:256]),
                         max_drop=0.5, data=(_images(digits.x_val), digits.y_val),
                         progress=False)  # fmt: skip
    assert q.report is not None and q.report.budget is not None
    budget = q.report.budget
    assert not budget.met and budget.kept_float == () and len(budget.steps) == 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_drop": 0.5}, "needs data=\\(x_val, y_val\\)"),
        ({"max_drop": -1, "data": "xy"}, "max_drop must be a number ≥ 0"),
        ({"max_drop": 0.5, "data": "x"}, "needs labels"),
        ({"data": "xy"}, "pass both, or neither"),
        ({"max_drop": 0.5, "data": "xy", "metric": "f1"}, "unknown metric 'f1'"),
    ],
)
def test_budget_mistakes_say_what_to_pass(
    outlier_cnn: nbd.Artifact, digits: Any, kwargs: dict[str, Any], message: str
) -> None:
    given = {"xy": (_images(digits.x_val), digits.y_val), "x": _images(digits.x_val)}
    if "data" in kwargs:
        kwargs = {**kwargs, "data": given[kwargs["data"]]}
    with pytest.raises(ConfigError, match=message):
        nbd.quantize(outlier_cnn, "int8-dynamic", progress=False, **kwargs)


def test_labels_must_match_the_inputs(outlier_cnn: nbd.Artifact, digits: Any) -> None:
    with pytest.raises(ConfigError, match=r"\d+ inputs but 10 labels"):
        nbd.quantize(outlier_cnn, "int8-dynamic", max_drop=1,
                     data=(_images(digits.x_val), digits.y_val[:10]), progress=False)  # fmt: skip

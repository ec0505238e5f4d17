"""The onnx package's ~1,900 backend node tests through nbd.optimize: nothing may change."""

from __future__ import annotations

import pytest

import nbdeploy as nbd
from tests.graph.node_sweep import _cases, sweep


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore")  # the onnx test generators warn about their own cases
def test_node_test_sweep_changes_and_crashes_nothing() -> None:
    result = sweep()
    assert result.checked > 1400, result  # the cases onnxruntime itself runs
    assert result.changed == [] and result.crashed == [] and result.lost_inputs == []


@pytest.mark.filterwarnings("ignore")
def test_a_pass_whose_library_fails_is_rolled_back_and_reported() -> None:
    case = next(c for c in _cases() if c.name == "test_split_to_sequence_1")
    inputs = dict(zip([i.name for i in case.model.graph.input], case.data_sets[0][0], strict=True))
    art = nbd.export(case.model, inputs, name="split", dynamic_batch=False)
    opt = nbd.optimize(art)
    folding = next(p for p in opt.report.passes if p.name == "constant-folding")
    assert folding.note.startswith("skipped, model left as it was: RuntimeError")
    assert "skipped, model left as it was" in str(opt.report)
    assert opt.parity is not None and opt.parity.ok

"""nbd.activations(torch_module, art): where an export answers differently from its
PyTorch source, module by module (real torch, real dynamo exporter)."""

from __future__ import annotations

import math

import numpy as np
import onnx
import pytest

import nbdeploy as nbd

torch = pytest.importorskip("torch")


class Block(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(8, 8)
        self.act = torch.nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.fc(x)) + x


@pytest.fixture(scope="module")
def exported() -> tuple[torch.nn.Module, nbd.Artifact]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), Block(), Block(), torch.nn.Linear(8, 2))
    x = np.random.default_rng(0).standard_normal((6, 4)).astype(np.float32)
    return model, nbd.export(model, x, name="seq", progress=False)


def test_every_module_of_a_faithful_export_matches(exported) -> None:  # type: ignore[no-untyped-def]
    model, art = exported
    report = nbd.activations(model, art, threshold_db=math.inf)
    assert [t.tensor for t in report.tensors] == ["0", "1.fc", "1.act", "1", "2.fc", "2.act",
                                                   "2", "3"]  # fmt: skip
    assert all(t.identical and t.matched_by == "scope" for t in report.tensors)
    assert report.first_divergence is None and report.unmatched == ()
    assert report.tensors[1].op == "Linear" and report.tensors[3].op == "Block"


def test_the_first_module_that_differs_is_named(exported) -> None:  # type: ignore[no-untyped-def]
    model, art = exported
    proto = onnx.ModelProto()
    proto.CopyFrom(art.onnx)
    weight = next(i for i in proto.graph.initializer if i.name == "2.fc.weight")
    changed = onnx.numpy_helper.to_array(weight) * 1.01  # a small export error in block 2
    weight.CopyFrom(onnx.numpy_helper.from_array(changed.astype(np.float32), weight.name))
    broken = art.derive(proto, step="edit")
    report = nbd.activations(model, broken, threshold_db=math.inf)
    first = report.first_divergence
    assert first is not None and first.tensor == "2.fc"
    assert all(t.identical for t in report.tensors if t.depth < first.depth)
    assert "the outputs first differ at 2.fc" in str(report)


def test_a_model_without_name_scopes_is_a_clear_error(exported) -> None:  # type: ignore[no-untyped-def]
    model, art = exported
    proto = onnx.ModelProto()
    proto.CopyFrom(art.onnx)
    for node in proto.graph.node:
        del node.metadata_props[:]
    with pytest.raises(nbd.ConfigError, match="no PyTorch name scopes"):
        nbd.activations(model, art.derive(proto, step="edit"))
    with pytest.raises(nbd.ConfigError, match="not a dict"):
        nbd.activations({}, art)  # type: ignore[arg-type]

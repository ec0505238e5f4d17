"""The studio widget, driven headless through its state and .click(): a real comparison,
a real graph view, a real deploy on the local server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

import nbdeploy as nbd
from nbdeploy import examples

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def digits_mlp() -> tuple[torch.nn.Module, examples.Digits]:
    data = examples.digits()
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
    x, y = torch.from_numpy(data.x_train), torch.from_numpy(data.y_train).long()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(150):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    return model.eval(), data


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("NBDEPLOY_REPOSITORY", str(tmp_path))
    yield tmp_path
    nbd.server.stop(tmp_path)


def test_run_fills_the_table_plots_and_deploys_the_chosen_row(
    digits_mlp: tuple[torch.nn.Module, examples.Digits], repo: Path
) -> None:
    model, data = digits_mlp
    panel = nbd.studio(model, example=data.x_val[:4], data=(data.x_val, data.y_val), name="mlp")
    panel.schemes.value = ["int8-dynamic", "fp16"]
    panel.providers.value = ["cpu", "cuda"]
    assert panel.deploy_button.disabled  # nothing to deploy before a run
    panel.run_button.click()
    cmp = panel.comparison
    assert cmp is not None and len(cmp.measured) == 4 and len(cmp.skipped) == 4
    assert all(r["accuracy"] > 90 for r in cmp.measured)
    assert "mlp [fp16]" in panel.table.value and "skipped" in panel.table.value
    assert panel.plot.outputs and panel.graph.outputs  # Pareto plot, graph + diff
    assert panel.chosen.value in panel.variants and not panel.deploy_button.disabled
    panel.chosen.value = "mlp [fp16]"
    panel.deploy_button.click()
    dep = panel.deployed
    assert isinstance(dep, nbd.Deployment) and dep.name == "mlp"
    x = data.x_val[:3]
    meta = dep.client().get_model_metadata("mlp")
    import tritonclient.http as httpclient

    item = httpclient.InferInput(meta["inputs"][0]["name"], list(x.shape), "FP32")
    item.set_data_from_numpy(x)
    answer = dep.client().infer("mlp", [item]).as_numpy(meta["outputs"][0]["name"])
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(answer, want, atol=2e-2)  # fp16 variant
    assert "deployed mlp [fp16]" in panel.status.value


def test_errors_show_in_the_panel(digits_mlp: tuple[torch.nn.Module, examples.Digits]) -> None:
    model, data = digits_mlp
    panel = nbd.studio(model, example=data.x_val[:4], data=(data.x_val, data.y_val))
    panel.deploy_button.disabled = False
    panel.deploy_button.click()  # before any run
    assert "run first" in panel.status.value
    with pytest.raises(nbd.ConfigError, match="needs example="):
        nbd.studio(model)

"""The studio widget, driven headless through its state and .click(): a real comparison
(in the run's thread, cancellable), a real graph view, a real deploy on the local server."""

from __future__ import annotations

import threading
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
    panel.run_button.click()  # runs in a thread
    cmp = panel.wait()
    # the model itself (torch eager), the export, optimized, two schemes; on cpu and cuda
    assert cmp is not None and len(cmp.measured) == 5 and len(cmp.skipped) == 5
    assert cmp.measured[0].variant == "mlp [torch eager]" and cmp.measured[0].source
    assert all(r["accuracy"] > 90 for r in cmp.measured) and not cmp.partial
    # skips said once per reason: onnxruntime's for the exports, torch's for the model
    assert "mlp [fp16]" in panel.table.value and panel.table.value.count("skipped on cuda") == 2
    assert "torch sees no GPU here" in panel.table.value
    assert "mlp [torch eager]" not in panel.variants  # measured, but it cannot be deployed
    choice = cmp.choice()
    assert choice is not None and panel.chosen.value == choice.variant
    assert f"chosen: {choice.reason}" in panel.status.value.replace("&#x27;", "'")
    assert not panel.run_button.disabled and panel.cancel_button.disabled
    assert panel.plot.outputs and panel.graph.outputs  # Pareto plot, graph + diff
    assert panel.chosen.value in panel.variants and not panel.deploy_button.disabled
    panel.chosen.value = "mlp [int8-dynamic]"  # its drift from the export: table and plot
    shown = [o["data"] for o in panel.graph.outputs]
    assert any("Activations mlp → mlp [int8-dynamic]" in d.get("text/html", "") for d in shown)
    assert any(d.get("text/plain") == "SQNR along mlp [int8-dynamic]" for d in shown)
    assert "drifts most at" in panel.table.value
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
    (version,) = dep.versions()
    assert "report.html" in version.extras  # the comparison that chose it, kept beside it


def test_the_panel_has_a_static_picture_for_where_widgets_do_not_run(
    digits_mlp: tuple[torch.nn.Module, examples.Digits],
) -> None:
    """A saved notebook on GitHub or without widget state shows the last run, not
    'VBox(children=...)'."""
    model, data = digits_mlp
    panel = nbd.studio(model, example=data.x_val[:4], data=(data.x_val, data.y_val), name="pic")
    panel.schemes.value = ["fp16"]
    before = panel._bundle()
    assert "application/vnd.jupyter.widget-view+json" in before
    assert "VBox" not in before["text/plain"] and "studio · pic" in before["text/html"]
    panel.run()
    after = panel._bundle()["text/html"]
    assert "pic [fp16]" in after and "data:image/png;base64," in after and "chosen:" in after


def test_run_is_disabled_while_running_and_cancel_keeps_the_rows_measured(
    digits_mlp: tuple[torch.nn.Module, examples.Digits],
) -> None:
    model, data = digits_mlp
    art = nbd.export(model, data.x_val[:4], name="mlp", progress=False)  # no source row
    panel = nbd.studio(art, data=(data.x_val, data.y_val))
    panel.schemes.value, panel.providers.value = ["fp16"], ["cpu", "cuda"]
    seen: list[tuple[bool, bool, bool, str]] = []

    def first_row_arrived(change: dict[str, object]) -> None:
        # In the run's thread, between two measurements: what a user sees, then Cancel.
        if not seen and "comparing…" in str(change["new"]):
            again = panel.start() is threading.current_thread()  # a second Run starts nothing
            seen.append((panel.run_button.disabled, panel.cancel_button.disabled, again,
                         str(change["new"])))  # fmt: skip
            panel.cancel_button.click()

    panel.table.observe(first_row_arrived, names="value")
    panel.run_button.click()
    cmp = panel.wait()
    assert seen and seen[0][:3] == (True, False, True)  # Run disabled, Cancel enabled
    assert "comparing… 1 of 6 rows" in seen[0][3]
    assert cmp is not None and cmp.partial and [r.variant for r in cmp.rows] == ["mlp"]
    assert (
        "partial" in panel.table.value
        and "cancelled, partial: 1 row measured" in panel.status.value
    )
    assert not panel.run_button.disabled and panel.cancel_button.disabled
    assert panel.chosen.value == "mlp" and not panel.deploy_button.disabled  # still deployable
    assert panel.run() is panel.comparison and not panel.comparison.partial  # runs again
    assert len(panel.comparison.rows) == 6


def test_errors_show_in_the_panel(digits_mlp: tuple[torch.nn.Module, examples.Digits]) -> None:
    model, data = digits_mlp
    panel = nbd.studio(model, example=data.x_val[:4], data=(data.x_val, data.y_val))
    panel.deploy_button.disabled = False
    panel.deploy_button.click()  # before any run
    assert "run first" in panel.status.value
    with pytest.raises(nbd.ConfigError, match="needs example="):
        nbd.studio(model)

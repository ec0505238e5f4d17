"""compare measures the model an artifact was exported from, as a row of its own."""

from __future__ import annotations

import pytest

import nbdeploy as nbd

torch = pytest.importorskip("torch")


def _mlp() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4))


def test_the_torch_model_itself_is_a_row_and_the_reference() -> None:
    model = _mlp().train()  # left in training mode: compare must not change that
    x = torch.randn(64, 16)
    art = nbd.export(model, x[:4], name="mlp", progress=False)
    q8 = nbd.quantize(art, "int8-dynamic", progress=False)
    labels = model.eval()(x).argmax(-1).numpy()
    model.train()
    table = nbd.compare([model, art, q8], data=(x.numpy(), labels), providers=["cpu", "cuda"],
                        repeat=1, progress=False)  # fmt: skip
    rows = {(r.variant, r.provider): r for r in table.rows}
    source = rows[("mlp [torch eager]", "cpu")]
    assert source.source and source.to_dict()["source"] is True
    assert source.metric == 100.0 and source.max_abs_diff == 0.0
    assert (
        source.p50_ms is not None
        and source.p50_ms > 0
        and source.size_bytes == (16 * 32 + 32 + 32 * 4 + 4) * 4
    )
    assert (
        rows[("mlp", "cpu")].max_abs_diff is not None and rows[("mlp", "cpu")].max_abs_diff < 1e-5
    )
    if not torch.cuda.is_available():
        assert rows[("mlp [torch eager]", "cuda")].skipped == "torch sees no GPU here"
    choice = table.choice()
    assert choice is not None and not choice.row.source
    assert model.training and all(m.training for m in model.modules())


def test_a_model_the_artifacts_were_not_exported_from_is_refused() -> None:
    art = nbd.export(_mlp(), torch.randn(2, 16), progress=False)
    with pytest.raises(nbd.ConfigError, match=r"not the torch\.nn\.modules\.container\.Sequential"):
        nbd.compare([torch.nn.Linear(16, 4), art], progress=False)
    with pytest.raises(nbd.ConfigError, match="at least one artifact"):
        nbd.compare([_mlp()], progress=False)

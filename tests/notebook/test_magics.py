"""%deploy in IPython's real shell, against the real local server."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch
from IPython import get_ipython
from IPython.core.error import UsageError
from IPython.testing.globalipapp import start_ipython

import nbdeploy as nbd

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ip(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    start_ipython()  # the one shell of this process (returns None once started)
    shell = get_ipython()
    repo = tmp_path_factory.mktemp("magic-repo")
    shell.run_line_magic("load_ext", "nbdeploy")
    shell.run_line_magic("load_ext", "nbdeploy")  # idempotent
    shell.run_line_magic("config", f"NbDeployMagics.repository = {str(repo)!r}")
    torch.manual_seed(0)
    shell.user_ns.update(
        model=torch.nn.Sequential(
            torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3)
        ).eval(),
        x=torch.randn(2, 4),
        x_cal=np.random.default_rng(0).standard_normal((32, 4)).astype(np.float32),
    )
    yield shell
    nbd.server.stop(repo)


def _answer(dep: nbd.Deployment, x: np.ndarray) -> np.ndarray:
    import tritonclient.http as httpclient

    client = dep.client()
    meta = client.get_model_metadata(dep.name)
    item = httpclient.InferInput(meta["inputs"][0]["name"], list(x.shape), "FP32")
    item.set_data_from_numpy(x)
    return client.infer(dep.name, [item]).as_numpy(meta["outputs"][0]["name"])


def test_deploy_gives_a_live_endpoint_that_answers_like_the_model(
    ip: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    dep = ip.run_line_magic("deploy", "model --example x --name tiny")
    assert isinstance(dep, nbd.Deployment) and dep.version == 1
    x = np.random.default_rng(1).standard_normal((5, 4)).astype(np.float32)
    with torch.no_grad():
        want = ip.user_ns["model"](torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(_answer(dep, x), want, rtol=1e-4, atol=1e-5)
    card = capsys.readouterr().out
    assert "tiny v1 is live" in card and "one request" in card and "curl -s -X POST" in card
    assert re.search(r"its answer to the example: \S+ \[2, 3\]: -?\d", card)
    assert "export parity: ok vs torch" in card and "optimize parity: ok" in card
    assert re.search(r"steps: export \d+\.\d s → optimize \d+\.\d s → serve \d+\.\d s", card)


def test_canary_list_promote_rollback(ip: Any, capsys: pytest.CaptureFixture[str]) -> None:
    ip.run_line_magic("deploy", "model --example x --name cany")
    dep = ip.run_line_magic("deploy", "model --example x --name cany --quantize int8-static "
                                      "--calibration x_cal --canary 20")  # fmt: skip
    assert dep.version == 2 and dep.traffic == {1: 80.0, 2: 20.0}
    table = ip.run_line_magic("deploy", "list")
    rows = {(r[0], r[1]): r for r in table.rows}
    assert rows[("cany", 2)][2] == 20.0 and rows[("cany", 1)][3] == "yes"
    assert ip.run_line_magic("deploy", "promote cany").shares == {1: 0.0, 2: 100.0}
    capsys.readouterr()
    rolled = ip.run_line_magic("deploy", "rollback cany")
    assert rolled.shares == {1: 100.0} and str(rolled) == "cany: traffic now v1 100%"
    assert capsys.readouterr().out == ""  # shown once, by its own repr: not echoed as well


def test_stop_says_so_once(tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    from nbdeploy.notebook import manage

    assert manage.stop(str(tmp_path)) is None  # nothing for IPython to echo after the line
    assert capsys.readouterr().out == "the local server was not running\n"


def test_cell_form_and_dry_run(ip: Any) -> None:
    art = ip.run_cell_magic("deploy", "--example x --name celled --dry-run",
                            "import torch\ntorch.nn.Linear(4, 2).eval()")  # fmt: skip
    assert isinstance(art, nbd.Artifact) and art.name == "celled"
    magics = next(c for c in ip.configurables if type(c).__name__ == "NbDeployMagics")
    assert nbd.server.status(magics.repository).running  # the server is there...
    assert "celled" not in {d.name for d in nbd.deployments(magics.repository)}  # ...untouched


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("modle --example x", "model 'modle': name 'modle' is not defined"),
        ("model --example y", "example 'y': name 'y' is not defined"),
        ("model --example x --quantize int3-magic",
         "unknown quantization scheme 'int3-magic'; the schemes are: int8-dynamic"),
        ("model --example x --quantize int8-static", "needs calibration inputs: --calibration"),
        ("model --example x --to 127.0.0.1:9", "cannot reach Triton at 127.0.0.1:9"),
        ("model", "needs an example input"),
        ("rollback", "needs one model name"),
        ("promote nothing-here", "no deployment named 'nothing-here'"),
        ("model --canary lots --example x", "argument --canary: invalid float value"),
    ],
)  # fmt: skip
def test_mistakes_are_one_line_usage_errors(ip: Any, line: str, message: str) -> None:
    with pytest.raises(UsageError) as info:
        ip.run_line_magic("deploy", line)
    assert message in str(info.value) and "\n" not in str(info.value).strip()[:200]


def test_help_and_config(ip: Any) -> None:
    magics = next(c for c in ip.configurables if type(c).__name__ == "NbDeployMagics")
    assert "export, optimize" in (type(magics).deploy.__doc__ or "").lower()
    ip.run_line_magic("config", "NbDeployMagics.optimize_by_default = False")
    try:
        assert magics.optimize_by_default is False
    finally:
        ip.run_line_magic("config", "NbDeployMagics.optimize_by_default = True")


def test_ctrl_c_cancels_cleanly(
    ip: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from nbdeploy import pipeline

    def interrupted(*_: object) -> None:
        raise KeyboardInterrupt  # the user pressed Ctrl-C while the graph was optimized

    monkeypatch.setattr(pipeline.Optimize, "run", interrupted)
    assert ip.run_line_magic("deploy", "model --example x --name cancelled") is None
    assert "cancelled; nothing was changed" in capsys.readouterr().out
    magics = next(c for c in ip.configurables if type(c).__name__ == "NbDeployMagics")
    assert "cancelled" not in {d.name for d in nbd.deployments(magics.repository)}


def test_a_classifier_with_labels_shows_its_classes(
    ip: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    import tritonclient.http as httpclient

    ip.user_ns["names"] = ["cat", "dog", "bird"]
    dep = ip.run_line_magic("deploy", "model --example x --name pets --labels names")
    card = capsys.readouterr().out
    assert "classes of" in card and "cat, dog, bird" in card and "the example's top" in card
    assert dep.labels == {dep.client().get_model_metadata("pets")["outputs"][0]["name"]:
                          ["cat", "dog", "bird"]}  # fmt: skip
    output = next(iter(dep.labels))
    x = np.random.default_rng(2).standard_normal((3, 4)).astype(np.float32)
    item = httpclient.InferInput(dep.client().get_model_metadata("pets")["inputs"][0]["name"],
                                 [3, 4], "FP32")  # fmt: skip
    item.set_data_from_numpy(x)
    top = dep.client().infer(
        "pets", [item], outputs=[httpclient.InferRequestedOutput(output, class_count=1)]
    )
    with torch.no_grad():
        want = ip.user_ns["model"](torch.from_numpy(x)).argmax(1).tolist()
    assert [v.decode().split(":")[2] for v in top.as_numpy(output).ravel()] == [
        ["cat", "dog", "bird"][i] for i in want]  # fmt: skip
    ip.user_ns["one_name"] = "cat"
    with pytest.raises(UsageError, match="labels= takes a list"):
        ip.run_line_magic("deploy", "model --example x --name bad --labels one_name")


def test_a_canarys_card_measures_the_canary(ip: Any, capsys: pytest.CaptureFixture[str]) -> None:
    ip.run_line_magic("deploy", "model --example x --name measured")
    capsys.readouterr()
    second = ip.run_line_magic("deploy", "model --example x --name measured --canary 10")
    card = capsys.readouterr().out
    assert second.version == 2 and "one request to v2" in card and "not measured" not in card
    # v1 reloaded with the new config (its counters start again): the card's ten requests,
    # its answer to the example and the wire check all named v2, none was drawn by the
    # 90/10 split
    counts = {s["version"]: s["inference_stats"]["success"]["count"] for s in second.stats()}
    assert counts == {"1": 0, "2": 12}


def test_a_text_column_is_probed_as_bytes_and_a_failed_probe_never_raises(
    ip: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    pd = pytest.importorskip("pandas")
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"size": rng.standard_normal(40).astype(np.float32),
                          "city": rng.choice(["rome", "oslo", "lima"], 40)})  # fmt: skip
    pipeline = make_pipeline(
        ColumnTransformer([("n", StandardScaler(), ["size"]), ("c", OneHotEncoder(), ["city"])]),
        LogisticRegression(),
    ).fit(frame, frame["city"] == "oslo")
    ip.user_ns.update(pipeline=pipeline, frame=frame)
    dep = ip.run_line_magic("deploy", "pipeline --example frame.head(8) --name cities")
    card = capsys.readouterr().out
    assert dep.version == 1 and "one request to v1" in card and "not measured" not in card
    snippet = card.split("  python:\n", 1)[1].split("  curl:\n", 1)[0]
    assert ip.run_cell(__import__("textwrap").dedent(snippet)).success  # strings as BYTES

    from nbdeploy.notebook import card as card_module

    def broken(*_: object) -> float:
        raise ConnectionError("the server went away")  # injected: after the model is live

    monkeypatch.setattr(card_module, "_latency_ms", broken)
    again = ip.run_line_magic("deploy", "pipeline --example frame.head(8) --name cities")
    assert again.version == 2
    assert "not measured: the server went away" in capsys.readouterr().out


def test_lines_are_parsed_as_a_user_reads_them(ip: Any) -> None:
    """Expressions with spaces stay whole, and quotes are the shell's, not the value's."""
    from nbdeploy.notebook.magics import split_line

    assert split_line('model --example x[:, :, :4] --name "my-model"') == [
        "model", "--example", "x[:, :, :4]", "--name", "my-model"]  # fmt: skip
    assert split_line("m --example f(a, [b, c])") == ["m", "--example", "f(a, [b, c])"]
    ip.user_ns["wide"] = torch.randn(2, 4, 6)
    art = ip.run_line_magic("deploy", 'model --example wide[:, 0, :4] --name "sliced" --dry-run')
    assert isinstance(art, nbd.Artifact) and art.name == "sliced"


def test_the_cards_python_snippet_runs_as_pasted_and_leaves_the_users_x_alone(
    ip: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    import textwrap

    ip.run_line_magic("deploy", "model --example x --name pasted")
    out = capsys.readouterr().out
    snippet = textwrap.dedent(out.split("  python:\n", 1)[1].split("  curl:\n", 1)[0])
    assert "your data instead" in snippet and "your_" not in snippet
    x_before = ip.user_ns["x"].clone()
    assert ip.run_cell(snippet).success  # pasted into the same notebook
    printed = capsys.readouterr().out
    assert torch.equal(ip.user_ns["x"], x_before)  # the user's x is untouched
    want = ip.user_ns["model"](x_before[:1]).detach().numpy()
    np.testing.assert_allclose(ip.user_ns["pasted_result"].as_numpy(
        ip.user_ns["pasted_result"].get_response()["outputs"][0]["name"]), want, rtol=1e-4,
        atol=1e-5)  # fmt: skip
    assert "[[" in printed


def test_a_bare_deploy_line_shows_the_card_once(ip: Any) -> None:
    """The card is displayed by %deploy; a bare line must not echo the deployment after
    it, and an assignment keeps the deployment."""
    bare = ip.run_cell("%deploy model --example x --name once", store_history=True)
    assert bare.success and bare.result is None
    kept = ip.run_cell("kept = %deploy model --example x --name once", store_history=True)
    assert kept.success and kept.result is None
    assert isinstance(ip.user_ns["kept"], nbd.Deployment) and ip.user_ns["kept"].version == 2

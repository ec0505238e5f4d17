"""The deployments sidebar's logic, without a browser: what each action says it will
change (and that the server then does exactly that), the copied snippets (run as pasted
against a real server), Try-it, and every running server found whatever its repository."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import nbdeploy as nbd
from nbdeploy import snippets
from nbdeploy.lab import deployments, plans
from tests.graph.helpers import model
from tests.servers import affine, expected

X = np.arange(6, dtype=np.float32).reshape(2, 3)
WIDE = """<ir_version: 8, opset_import: ["" : 17]>
    wide (float[N, 100] x) => (float[N, 100] y) { y = Relu (x) }"""


# -- what will change ------------------------------------------------------------------


def test_promote_says_the_split_before_and_after() -> None:
    plan = plans.plans("digits", {1: 75.0, 2: 25.0}, [1, 2])["promote"]
    assert plan.enabled
    assert plan.changes == ("v1 75% → 0% (stays loaded for an instant rollback)", "v2 25% → 100%")
    assert "v1 stays loaded at 0%" in plan.summary
    assert plan.after == {1: 0.0, 2: 100.0}


def test_promote_with_one_version_is_disabled_and_says_why() -> None:
    plan = plans.plans("digits", {1: 100.0}, [1])["promote"]
    assert not plan.enabled and plan.changes == ()
    assert "one version loaded (v1)" in plan.summary and "canary" in plan.summary
    done = plans.plans("digits", {1: 0.0, 2: 100.0}, [1, 2])["promote"]
    assert not done.enabled and done.summary == "v2 already takes all of the traffic"


def test_rollback_after_promote_says_it_unloads_the_newest() -> None:
    plan = plans.plans("digits", {1: 0.0, 2: 100.0}, [1, 2])["rollback"]
    assert plan.summary == (
        "Sends all traffic back to v1 and unloads v2 (its files stay; serve it again or Undo)."
    )
    assert plan.changes == ("v1 0% → 100%", "v2 100% → unloaded (its files stay)")


def test_rollback_loads_an_older_version_from_disk_or_is_disabled() -> None:
    plan = plans.plans("digits", {3: 100.0}, [1, 2, 3])["rollback"]
    assert plan.changes == ("v2 not loaded → 100% (loaded from disk)",
                            "v3 100% → unloaded (its files stay)")  # fmt: skip
    assert "v2 is loaded again from disk first" in plan.summary
    first = plans.plans("digits", {1: 100.0}, [1])["rollback"]
    assert not first.enabled and "first version" in first.summary


def test_unload_lists_every_version_and_what_undo_restores() -> None:
    plan = plans.plans("digits", {1: 66.5, 2: 33.5}, [1, 2])["unload"]
    assert plan.changes == ("v1 66.5% → unloaded (its files stay)",
                            "v2 33.5% → unloaded (its files stay)")  # fmt: skip
    assert "Undo loads it again as it is now (v1 66.5% · v2 33.5%)" in plan.summary
    assert plan.to_dict()["before"] == {"1": 66.5, "2": 33.5}
    off = plans.plans("digits", {}, [1, 2])
    assert not any(p.enabled for p in off.values())


# -- snippets, pure --------------------------------------------------------------------

INPUTS = [{"name": "x", "datatype": "FP32", "shape": [-1, 3]}]


def test_the_python_snippet_writes_the_examples_first_row() -> None:
    example = {"inputs": [{"name": "x", "shape": [2, 3], "datatype": "FP32",
                           "data": [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]}]}  # fmt: skip
    code = snippets.python("http://127.0.0.1:9", "my-model", 2, INPUTS, example)
    ast.parse(code)
    assert 'my_model_x = np.array([[0.0, 1.0, 2.0]], dtype="float32")' in code
    assert "# your data instead: a float32 array of shape [N, 3]" in code
    assert 'model_version="2"' in code and "urllib" not in code
    assert "\nx =" not in code  # the user's x is left alone


def test_snippets_without_an_example_send_zeros_of_the_metadata_shape() -> None:
    code = snippets.python("http://127.0.0.1:9", "m", 1, INPUTS, None)
    assert 'm_x = np.zeros([1, 3], dtype="float32")' in code
    line = snippets.curl("http://127.0.0.1:9", "m", 1, INPUTS, None)
    assert '"data": [0, 0, 0]' in line and "/v2/models/m/versions/1/infer" in line


def test_image_shaped_inputs_are_recognised() -> None:
    assert snippets.image_layout([-1, 3, 224, 224], "FP32") == {
        "layout": "NCHW", "channels": 3, "height": 224, "width": 224}  # fmt: skip
    assert snippets.image_layout([-1, 28, 28, 1], "FP32") == {
        "layout": "NHWC", "channels": 1, "height": 28, "width": 28}  # fmt: skip
    assert snippets.image_layout([-1, 3, -1, -1], "FP16", [1, 3, 32, 48])["width"] == 48
    assert snippets.image_layout([-1, 3, -1, -1], "FP32")["height"] == snippets.DEFAULT_SIDE
    assert snippets.image_layout([-1, 3, 224, 224], "INT64") is None
    assert snippets.image_layout([-1, 5, 8, 8], "FP32") is None
    assert snippets.image_layout([-1, 3], "FP32") is None


# -- against a real server -------------------------------------------------------------


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A server on a repository other than the default, serving ``affine`` (v1 with its
    example, v2 a 25% canary without one) and ``wide`` (an example too large to paste)."""
    repo = tmp_path_factory.mktemp("elsewhere")
    nbd.server.start(repo, http_port=0, grpc_port=0)
    try:
        art = nbd.export(affine().onnx, example={"x": X}, name="affine")
        nbd.serve(art, name="affine", repository=repo)
        nbd.serve(affine(1), name="affine", canary=25, repository=repo)
        wide = model(WIDE)
        example = {"x": np.linspace(-1, 1, 300, dtype=np.float32).reshape(3, 100)}
        nbd.serve(nbd.export(wide.onnx, example=example, name="wide"), name="wide",
                  repository=repo)  # fmt: skip
        yield nbd.server.status(repo).repository
    finally:
        nbd.server.stop(repo)


@pytest.fixture
def elsewhere(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The Jupyter server's default repository is not the one the models are served from."""
    monkeypatch.setenv("NBDEPLOY_REPOSITORY", str(tmp_path / "default"))


def _server(repository: Path) -> dict[str, Any]:
    found = [s for s in deployments.overview()["servers"] if s["repository"] == str(repository)]
    assert len(found) == 1, "the server of a repository that is not the default is listed"
    return dict(found[0])


def _model(repository: Path, name: str) -> dict[str, Any]:
    (found,) = [m for m in _server(repository)["models"] if m["name"] == name]
    return dict(found)


@pytest.mark.usefixtures("elsewhere")
def test_every_running_server_is_listed_with_its_repository(repository: Path) -> None:
    server = _server(repository)
    assert server["default"] is False and server["error"] == ""
    assert str(server["http_url"]).startswith("http://127.0.0.1:")
    affine_doc = _model(repository, "affine")
    roles = {v["version"]: v["role"] for v in affine_doc["versions"]}
    assert roles == {1: "stable", 2: "canary"}
    assert affine_doc["on_disk"] == [1, 2]
    assert affine_doc["actions"]["promote"]["changes"] == [
        "v1 75% → 0% (stays loaded for an instant rollback)", "v2 25% → 100%"]  # fmt: skip


def _run(code: str, *, shell: bool = False) -> str:
    command = ["bash", "-c", code] if shell else [sys.executable, "-c", code]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _printed(out: str, name: str = "y") -> np.ndarray:
    text = out.strip().removeprefix(f"{name} ")
    return np.array(ast.literal_eval(",".join(text.replace("\n", " ").split()).replace("[,", "[")))


@pytest.mark.usefixtures("elsewhere")
def test_copied_snippets_run_as_pasted(repository: Path) -> None:
    v1, v2 = _model(repository, "affine")["versions"]
    # v1 keeps its example: its first row is written out
    np.testing.assert_allclose(_printed(_run(v1["snippets"]["python"])), expected(X[:1]))
    answer = json.loads(_run(v1["snippets"]["curl"], shell=True))
    np.testing.assert_allclose(answer["outputs"][0]["data"], expected(X[:1]).ravel())
    # v2 keeps none: zeros of the shape its metadata gives
    assert "np.zeros([1, 3]" in v2["snippets"]["python"]
    np.testing.assert_allclose(_printed(_run(v2["snippets"]["python"])),
                               expected(np.zeros((1, 3), np.float32), 1.0))  # fmt: skip
    # wide's example has 100 values a row: the snippets read it from the server
    (wide,) = _model(repository, "wide")["versions"]
    assert "urllib.request.urlopen" in wide["snippets"]["python"]
    assert "| \\\n  curl -s -X POST" in wide["snippets"]["curl"]
    want = np.maximum(np.linspace(-1, 1, 300, dtype=np.float32).reshape(3, 100), 0)
    answer = json.loads(_run(wide["snippets"]["curl"], shell=True))
    np.testing.assert_allclose(np.reshape(answer["outputs"][0]["data"], (3, 100)), want)
    out = _run(wide["snippets"]["python"] + "\nprint(wide_result.as_numpy('y').sum())")
    assert float(out.strip().splitlines()[-1]) == pytest.approx(float(want.sum()), rel=1e-5)


@pytest.mark.usefixtures("elsewhere")
def test_the_zeros_curl_line_runs_for_a_large_input(repository: Path) -> None:
    inputs = [{"name": "x", "datatype": "FP32", "shape": [-1, 100]}]
    http_url = str(_server(repository)["http_url"])
    line = snippets.curl(http_url, "wide", 1, inputs, None)
    assert line.startswith("python3 -c ")
    answer = json.loads(_run(line, shell=True))
    assert answer["outputs"][0]["shape"] == [1, 100] and set(answer["outputs"][0]["data"]) == {0}


@pytest.mark.usefixtures("elsewhere")
def test_try_it_starts_from_the_example_and_answers_with_latency(repository: Path) -> None:
    start = deployments.try_request(str(repository), "affine", 1)
    assert start["body"]["inputs"][0]["data"] == X.ravel().tolist()
    assert start["source"] == "the example v1 was deployed with"
    assert start["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 3], "image": None}]
    answer = deployments.try_send(str(repository), "affine", 1, start["body"])
    (output,) = answer["outputs"]
    assert output["shape"] == [2, 2] and answer["ms"] > 0 and answer["version"] == 1
    np.testing.assert_allclose(output["first"], expected(X).ravel())
    zeros = deployments.try_request(str(repository), "affine", 2)
    assert zeros["body"]["inputs"][0]["data"] == [0, 0, 0]
    assert "keeps no example" in zeros["source"]


@pytest.mark.usefixtures("elsewhere")
def test_try_it_reports_the_servers_message(repository: Path) -> None:
    wrong = {"inputs": [{"name": "x", "shape": [1, 3], "datatype": "INT32", "data": [1, 2, 3]}]}
    with pytest.raises(nbd.ServerError, match="expects 'FP32'") as info:
        deployments.try_send(str(repository), "affine", 1, wrong)
    assert info.value.status == 400
    with pytest.raises(nbd.ServerError, match='"inputs"') as info:
        deployments.try_send(str(repository), "affine", 1, [1, 2])
    assert info.value.status == 400


@pytest.mark.usefixtures("elsewhere")
def test_actions_do_what_their_dialog_said_and_undo_restores(repository: Path) -> None:
    repo = str(repository)
    for action in ("promote", "rollback", "unload"):
        before = _model(repository, "affine")
        plan = before["actions"][action]
        done = deployments.act(repo, "affine", action)
        assert done["after"] == plan["after"], action
        after = _model(repository, "affine")
        split = {str(v["version"]): v["traffic"] for v in after["versions"]}
        assert split == plan["after"], action
        undone = deployments.act(repo, "affine", "load", done["before"])  # Undo
        assert undone["after"] == plan["before"], action
    with pytest.raises(nbd.ServerError, match="no running nbdeploy server serves") as info:
        deployments.act(str(repository / "nowhere"), "affine", "unload")
    assert info.value.status == 404

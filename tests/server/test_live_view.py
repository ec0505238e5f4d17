"""What the live view of a deployment reads from the server: per version, the last
minutes window by window, requests per second, where the version came from, and the
extras kept beside it (a request to try it with)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import pytest

import nbdeploy as nbd
from nbdeploy.live import MIME_TYPE
from nbdeploy.server.client import LocalServer
from nbdeploy.server.stats import HISTORY_S, WINDOW_S, VersionStats
from tests.servers import affine, expected, in_process_api, stage

X = np.ones((2, 3), np.float32)
REQUEST = {"inputs": [{"name": "x", "shape": [2, 3], "datatype": "FP32", "data": [1.0] * 6}]}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LocalServer]:
    with in_process_api(tmp_path) as client:
        yield client


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[Path]:
    """A real server (subprocess, free ports) on a repository of its own."""
    nbd.server.start(tmp_path, http_port=0, grpc_port=0)
    yield tmp_path
    nbd.server.stop(tmp_path)


def _with_example() -> nbd.Artifact:
    """``affine`` exported with an example, which nbd.serve keeps beside the version."""
    return nbd.export(affine().payload.model, example={"x": X}, name="affine")


def _load(server: LocalServer, repository: Path) -> None:
    server.load("affine", staged=stage(repository, affine()))


def test_each_version_reports_its_last_minutes_and_its_origin(
    server: LocalServer, tmp_path: Path
) -> None:
    _load(server, tmp_path)
    for _ in range(5):
        answer, ms = server.infer_json("affine", REQUEST, version=1)
        assert ms > 0
    np.testing.assert_allclose(np.reshape(answer["outputs"][0]["data"], (2, 2)), expected(X))
    (version,) = server.overview()[0].versions
    (window,) = version.history
    assert (window["requests"], window["failures"]) == (5, 0)
    assert window["t"] % WINDOW_S == 0 and window["p50_ms"] is not None
    assert window["p95_ms"] >= window["p50_ms"]
    assert version.requests_per_s > 0 and version.loaded_at > 0
    assert version.source.endswith(f"(onnx {onnx.__version__})")
    assert version.steps == ("export (passthrough)",)
    assert version.extras == ()


def test_a_missing_extra_is_a_404_that_lists_what_exists(
    server: LocalServer, tmp_path: Path
) -> None:
    _load(server, tmp_path)
    with pytest.raises(nbd.ServerError, match=r"has no example \(its extras: none\)") as info:
        server.extra("affine", 1, "example")
    assert info.value.status == 404
    with pytest.raises(nbd.ServerError) as info:
        server.extra("affine", 1, "../config.pbtxt")
    assert info.value.status == 404


def test_failures_count_in_their_window(server: LocalServer, tmp_path: Path) -> None:
    _load(server, tmp_path)
    wrong = {"inputs": [{**REQUEST["inputs"][0], "datatype": "INT32"}]}
    with pytest.raises(nbd.ServerError):
        server.infer_json("affine", wrong)
    server.infer_json("affine", REQUEST)
    (version,) = server.overview()[0].versions
    assert [(w["requests"], w["failures"]) for w in version.history] in ([(1, 0)], [(2, 1)])


def test_history_keeps_only_the_last_minutes() -> None:
    stats = VersionStats()
    stats.record_request(True, 2_000_000)
    (window,) = stats.history()
    assert window["p50_ms"] == 2.0
    assert stats.history(now=window["t"] + HISTORY_S + WINDOW_S) == []
    assert stats.rate(now=window["t"] + HISTORY_S + WINDOW_S) == 0.0


@pytest.mark.slow
def test_serve_keeps_the_example_as_a_request_to_try(repo: Path) -> None:
    art = _with_example()
    dep = nbd.serve(art, repository=repo)
    (version,) = dep.versions()
    assert version.extras == ("example",)
    with dep.live.connect() as server:
        request = json.loads(server.extra("affine", dep.version, "example"))
        answer, _ = server.infer_json("affine", request, version=dep.version)
    assert request["inputs"][0]["shape"] == [2, 3]
    np.testing.assert_allclose(np.reshape(answer["outputs"][0]["data"], (2, 2)), expected(X))


@pytest.mark.slow
def test_a_deployment_answers_try_it_and_shows_its_versions_live(repo: Path) -> None:
    art = _with_example()
    dep = nbd.serve(art, repository=repo)
    tried = dep.try_it()
    assert (tried.name, tried.version) == ("affine", "1") and tried.ms > 0
    np.testing.assert_allclose(tried.outputs["y"], expected(X))
    three = np.full((3, 3), 2, np.float32)
    np.testing.assert_allclose(dep.try_it(three).outputs["y"], expected(three))
    assert "answered in" in tried._repr_html_() and "[2, 2] float" in str(tried)
    bundle = dep._repr_mimebundle_()
    where = {"repository": str(repo), "http_url": dep.http_url}
    assert bundle[MIME_TYPE] == {"name": "affine", "version": 1, **where}
    assert "<svg" in bundle["text/html"] and "export (passthrough)" in bundle["text/html"]
    assert "v1: 100% ·" in bundle["text/plain"]
    plain = nbd.serve(affine(), name="plain", repository=repo)  # no example
    with pytest.raises(nbd.ConfigError, match=r"served without an example; pass the inputs"):
        plain.try_it()


@pytest.mark.slow
def test_the_comparison_that_chose_a_version_is_kept_beside_it(repo: Path) -> None:
    art = _with_example()
    table = nbd.compare([art, nbd.optimize(art)], progress=False, repeat=2)
    dep = nbd.serve(table.artifact(table.best()), report=table, repository=repo)
    (version,) = dep.versions()
    assert set(version.extras) == {"example", "report.html", "report.csv"}
    with dep.live.connect() as server:
        page = server.extra("affine", dep.version, "report.html").decode()
        rows = server.extra("affine", dep.version, "report.csv").decode()
    assert page == table.to_html() and rows == table.to_csv()

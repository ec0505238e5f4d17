"""kill -9 at every write point, then a start as a user does it: every committed version
serves its own answers at the last committed traffic, and nothing is lost.

The server kills itself with SIGKILL at a named point (``NBDEPLOY_CRASH_AT``, see
``nbdeploy/server/faults.py``) in the middle of a real call from a real client; then
``nbd.server.start`` brings it back. Each case starts from a copy of one repository:
``affine`` v1 (offset 0) and v2 (offset 1) at 75/25, and ``other`` v1.
"""

from __future__ import annotations

import base64
import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.http as httpclient

import nbdeploy as nbd
from nbdeploy.server.client import LocalServer
from nbdeploy.server.faults import CRASH_POINTS
from tests.servers import affine, expected

pytestmark = pytest.mark.slow

X = np.ones((2, 3), np.float32)
BEFORE = {"affine": {1: 75.0, 2: 25.0}, "other": {1: 100.0}}
OFFSETS = {"affine": {1: 0, 2: 1, 3: 2}, "other": {1: 0}, "fresh": {1: 5}}

Operation = Callable[[Path], object]


def _server(repo: Path) -> LocalServer:
    return nbd.server.status(repo, models=False).connect()


def _serve_canary(repo: Path) -> object:
    return nbd.serve(affine(2), name="affine", canary=10, repository=repo)


def _serve_new_model(repo: Path) -> object:
    return nbd.serve(affine(5), name="fresh", repository=repo)


def _promote(repo: Path) -> object:
    with _server(repo) as server:
        return server.set_traffic("affine", "promote")


def _rollback(repo: Path) -> object:
    with _server(repo) as server:
        return server.set_traffic("affine", "rollback")


def _unload(repo: Path) -> object:
    with _server(repo) as server:
        server.unload("other")


def _load_with_files(repo: Path) -> object:
    """What tritonclient's load_model(config=..., files=...) sends."""
    config = {"name": "affine", "max_batch_size": 8,
              "version_policy": {"specific": {"versions": [3]}}}  # fmt: skip
    model = base64.b64encode(affine(2).onnx.SerializeToString()).decode()
    params = {"config": json.dumps(config), "file:3/model.onnx": model}
    url = nbd.server.status(repo, models=False).http_url
    return httpx.post(f"{url}/v2/repository/models/affine/load", json={"parameters": params},
                      timeout=60)  # fmt: skip


# Each operation, the traffic it commits, and the crash points it passes through.
OPERATIONS: dict[str, tuple[Operation, dict[str, dict[int, float]], tuple[str, ...]]] = {
    "serve a canary": (_serve_canary, {"affine": {1: 90.0, 3: 10.0}}, CRASH_POINTS[1:]),
    "serve a new model": (_serve_new_model, {"fresh": {1: 100.0}}, CRASH_POINTS[1:]),
    "promote": (_promote, {"affine": {1: 0.0, 2: 100.0}}, ("loaded", *CRASH_POINTS[-2:])),
    "rollback": (_rollback, {"affine": {1: 100.0}}, ("loaded", *CRASH_POINTS[-2:])),
    "unload": (_unload, {"other": {}}, CRASH_POINTS[-2:]),
    "load with file overrides": (_load_with_files, {"affine": {3: 100.0}}, CRASH_POINTS),
}
CASES = [(op, point) for op, (_, _, points) in OPERATIONS.items() for point in points]
# The write that commits: traffic.json, except for a model that has none yet, whose
# first version folder landing is the commit (Triton serves such a folder too).
COMMITTED_AT = {"serve a new model": "version-committed"}


def _committed(operation: str, point: str) -> bool:
    commit = COMMITTED_AT.get(operation, "traffic-saved")
    return CRASH_POINTS.index(point) >= CRASH_POINTS.index(commit)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = tmp_path_factory.mktemp("template")
    nbd.server.start(repo, http_port=0, grpc_port=0).wait_ready()
    try:
        nbd.serve(affine(0), name="affine", repository=repo)
        nbd.serve(affine(1), name="affine", canary=25, repository=repo)
        nbd.serve(affine(0), name="other", repository=repo)
    finally:
        nbd.server.stop(repo)
    return repo


@pytest.fixture
def repo(template: Path, tmp_path: Path) -> Iterator[Path]:
    copy = tmp_path / "repo"
    shutil.copytree(template, copy, ignore=shutil.ignore_patterns("server.*", ".*lock"))
    yield copy
    nbd.server.stop(copy)


def _served(repo: Path) -> dict[str, dict[int, float]]:
    """Traffic by model, as the server reports it."""
    with _server(repo) as server:
        return {m.name: m.traffic for m in server.overview() if m.ready}


def _check_answers(repo: Path, served: dict[str, dict[int, float]]) -> None:
    """Every loaded version answers as its own model does."""
    status = nbd.server.status(repo)
    client = httpclient.InferenceServerClient(status.http_url.removeprefix("http://"))
    item = httpclient.InferInput("x", list(X.shape), "FP32")
    item.set_data_from_numpy(X)
    for name, traffic in served.items():
        for version in traffic:
            answer = client.infer(name, [item], model_version=str(version)).as_numpy("y")
            np.testing.assert_allclose(answer, expected(X, OFFSETS[name][version]))


@pytest.mark.parametrize(("operation", "point"), CASES, ids=[f"{o}@{p}" for o, p in CASES])
def test_a_kill_at_any_write_point_loses_nothing_committed(
    repo: Path, operation: str, point: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    run, committed, _ = OPERATIONS[operation]
    monkeypatch.setenv("NBDEPLOY_CRASH_AT", point)
    nbd.server.start(repo, http_port=0, grpc_port=0).wait_ready()
    monkeypatch.delenv("NBDEPLOY_CRASH_AT")
    with pytest.raises((nbd.ServerError, httpx.HTTPError), match=r"cannot reach|disconnected"):
        run(repo)
    assert not nbd.server.status(repo).running  # it really died
    nbd.server.start(repo).wait_ready()  # as a user would: same ports, no options
    after = {**BEFORE, **committed} if _committed(operation, point) else BEFORE
    want = {name: traffic for name, traffic in after.items() if traffic}
    assert _served(repo) == want
    _check_answers(repo, want)
    assert not any(row["reason"].startswith(("failed", "model")) for row in
                   nbd.server.status(repo).models)  # fmt: skip
    assert not any((repo / ".staging").glob("*"))


def test_two_kernels_serving_one_model_at_once_get_two_loaded_versions(repo: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    nbd.server.start(repo, http_port=0, grpc_port=0).wait_ready()
    with ThreadPoolExecutor(2) as pool:
        deployments = list(pool.map(lambda o: nbd.serve(affine(o), name="affine",
                                                        repository=repo), [2, 2]))  # fmt: skip
    assert sorted(d.version for d in deployments) == [3, 4]
    rows = nbd.server.status(repo).models
    ready = {int(r["version"]) for r in rows if r["name"] == "affine" and r["state"] == "READY"}
    assert {3, 4} <= ready  # the second one serves, the first stays warm beside it
    assert deployments[0].traffic == {3: 0.0, 4: 100.0}


def _reasons(repo: Path) -> dict[tuple[str, str], str]:
    return {(r["name"], r["version"]): r["reason"] for r in nbd.server.status(repo).models}


def test_a_damaged_version_is_skipped_and_reported_the_rest_serve(repo: Path) -> None:
    model = repo / "affine" / "2" / "model.onnx"
    model.write_bytes(model.read_bytes()[:40])  # truncated
    status = nbd.server.start(repo, http_port=0, grpc_port=0).wait_ready()
    assert _served(repo) == {"affine": {1: 100.0}, "other": {1: 100.0}}
    _check_answers(repo, _served(repo))
    assert _reasons(repo)[("affine", "2")].startswith("failed to load 'affine' version 2")
    assert "affine v2: failed to load" in str(status)
    assert "is not served" in (repo / "server.log").read_text()


@pytest.mark.parametrize(
    ("traffic", "served"),
    [
        (b'{"1": 75, "2', {2: 100.0}),  # truncated: the newest version that loads
        (b"\x00\x00\x00", {2: 100.0}),
        (b'{"1": "nan", "2": "inf"}', {2: 100.0}),
        (b'{"abc": 1}', {2: 100.0}),
        (b'{"1": 50, "9": 50}', {1: 100.0}),  # names a version that is not there
        (b'{"9": 100}', {2: 100.0}),
        (None, {2: 100.0}),  # missing: Triton's default policy, the latest version
    ],
)  # fmt: skip
def test_damaged_traffic_falls_back_and_never_stops_the_start(
    repo: Path, traffic: bytes | None, served: dict[int, float]
) -> None:
    path = repo / "affine" / "traffic.json"
    if traffic is None:
        path.unlink()
    else:
        path.write_bytes(traffic)
    nbd.server.start(repo, http_port=0, grpc_port=0).wait_ready()
    assert _served(repo) == {"affine": served, "other": {1: 100.0}}
    _check_answers(repo, _served(repo))
    assert path.read_bytes() == traffic if traffic else not path.exists()  # nothing rewritten


def test_a_damaged_config_stops_only_its_model(repo: Path) -> None:
    (repo / "affine" / "config.pbtxt").write_text("input { name: ")
    nbd.server.start(repo, http_port=0, grpc_port=0).wait_ready()
    assert _served(repo) == {"other": {1: 100.0}}
    assert "config.pbtxt is not a valid model config" in _reasons(repo)[("affine", "1")]


def test_files_left_on_their_way_in_are_cleared_at_start(repo: Path) -> None:
    (repo / ".staging" / "serve-abc").mkdir(parents=True)
    (repo / ".staging" / "serve-abc" / "model.onnx").write_bytes(b"half a model")
    (repo / "affine" / ".incoming-xyz").mkdir()
    nbd.server.start(repo, http_port=0, grpc_port=0).wait_ready()
    assert (
        not any((repo / ".staging").glob("*")) and not (repo / "affine" / ".incoming-xyz").exists()
    )
    assert [r["name"] for r in nbd.server.status(repo).models].count("affine") == 2

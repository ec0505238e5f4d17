"""The typed client for the local server's own API, against the real app in process
(no socket, no subprocess), and against nothing at all."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import nbdeploy as nbd
from nbdeploy.server.client import LocalServer
from tests.servers import affine, in_process_api, stage


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LocalServer]:
    with in_process_api(tmp_path) as client:
        yield client


def _stage(repository: Path, offset: float) -> str:
    return stage(repository, affine(offset))


def test_load_overview_traffic_unload(server: LocalServer, tmp_path: Path) -> None:
    first = server.load("affine", staged=_stage(tmp_path, 0))
    assert first is not None and (first.version, first.traffic) == (1, {1: 100.0})
    second = server.load("affine", staged=_stage(tmp_path, 1), canary=20)
    assert second is not None and second.traffic == {1: 80.0, 2: 20.0}
    (model,) = server.overview()
    assert (model.name, model.ready, model.serving, model.traffic) == (
        "affine", True, 2, {1: 80.0, 2: 20.0})  # fmt: skip
    assert [(v.version, v.requests, v.p50_ms) for v in model.versions] == [(1, 0, None),
                                                                          (2, 0, None)]  # fmt: skip
    assert server.set_traffic("affine", "promote") == {1: 0.0, 2: 100.0}
    assert server.traffic("affine") == {1: 0.0, 2: 100.0}
    assert [row["state"] for row in server.index()] == ["READY", "READY"]
    server.unload("affine")
    assert [m.ready for m in server.overview()] == [False]


def test_refusals_carry_the_servers_status_and_message(server: LocalServer) -> None:
    with pytest.raises(
        nbd.ServerError, match="Request for unknown model: 'nope' is not found"
    ) as info:
        server.traffic("nope")
    assert info.value.status == 404
    with pytest.raises(nbd.ServerError, match="no staged folder") as info:
        server.load("affine", staged="missing")
    assert info.value.status == 400


def test_a_server_that_is_not_there() -> None:
    with LocalServer("http://127.0.0.1:9", timeout=2) as nowhere:
        assert not nowhere.live()
        with pytest.raises(nbd.ServerError, match="cannot reach") as info:
            nowhere.overview()
    assert info.value.status is None

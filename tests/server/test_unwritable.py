"""A repository on a full disk or a read-only mount: every call that would write answers
a clear 503 that names the repository, nothing changes in memory or on disk, and the
server goes on serving. Real file systems: a small tmpfs, and a read-only bind mount
(both need root; skipped cleanly elsewhere)."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from tritonclient.utils import InferenceServerException

import nbdeploy as nbd
from nbdeploy.errors import ServerError
from tests.servers import affine

pytestmark = pytest.mark.slow
BEFORE = {1: 75.0, 2: 25.0}


def _mount(*args: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("mounting a small or read-only file system needs root")
    done = subprocess.run(["mount", *args], capture_output=True, text=True, check=False)
    if done.returncode:
        pytest.skip(f"cannot mount here: {done.stderr.strip()}")


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[Path]:
    """``affine`` v1 and v2 at 75/25, on a 32 MiB tmpfs of its own."""
    disk = tmp_path / "disk"
    disk.mkdir()
    _mount("-t", "tmpfs", "-o", "size=32m", "tmpfs", str(disk))
    repo = disk / "repo"
    try:
        nbd.server.start(repo, http_port=0, grpc_port=0)
        nbd.serve(affine(0), name="affine", repository=repo)
        nbd.serve(affine(1), name="affine", canary=25, repository=repo)
        yield repo
    finally:
        nbd.server.stop(repo)
        subprocess.run(["umount", "-l", str(disk)], check=False)


def _fill(disk: Path) -> Path:
    """Write until the file system is full; the filler file."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        for size in (2**20, 4096, 1):
            with contextlib.suppress(OSError):
                while os.write(fd, b"\0" * size):
                    pass
    finally:
        os.close(fd)
    return filler


def _unchanged(repo: Path, dep: nbd.Deployment) -> None:
    assert dep.traffic == BEFORE
    assert json.loads((repo / "affine" / "traffic.json").read_text()) == {"1": 75.0, "2": 25.0}
    assert dep.client().is_model_ready("affine", "1") and dep.client().is_model_ready("affine", "2")
    assert not any((repo / ".staging").glob("*"))


def _writes_refused(repo: Path, dep: nbd.Deployment, cause: str) -> None:
    message = rf"repository {repo} is not writable: {cause}"
    for call in (dep.promote, dep.rollback):
        with pytest.raises(ServerError, match=message) as info:
            call()
        assert info.value.status == 503
        _unchanged(repo, dep)
    with pytest.raises(InferenceServerException, match=message):
        dep.client().unload_model("affine")
    _unchanged(repo, dep)


def test_a_full_disk(repo: Path) -> None:
    dep = nbd.deployments(repo)[0]
    filler = _fill(repo.parent)
    _writes_refused(repo, dep, "No space left on device")
    with pytest.raises(ServerError, match="not writable: No space left on device"):
        nbd.serve(affine(2), name="affine", canary=10, repository=repo)
    _unchanged(repo, dep)
    filler.unlink()
    assert dep.promote() == {1: 0.0, 2: 100.0}  # and all is well once there is room


def test_a_read_only_model_folder(repo: Path) -> None:
    dep = nbd.deployments(repo)[0]
    folder = str(repo / "affine")
    _mount("--bind", folder, folder)
    try:
        _mount("-o", "remount,bind,ro", folder)
        _writes_refused(repo, dep, "Read-only file system")
    finally:
        subprocess.run(["umount", folder], check=False)
    assert dep.promote() == {1: 0.0, 2: 100.0}

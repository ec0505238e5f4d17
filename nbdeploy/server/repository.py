"""The model repository on disk, in Triton's layout, which is the server's whole state::

    <repo>/<model>/config.pbtxt
    <repo>/<model>/<version>/model.onnx        (+ external data beside it)
    <repo>/<model>/traffic.json                which versions serve, and their shares
    <repo>/server.json                         the running server (pid, ports), if any

``tritonserver --model-repository <repo>`` serves the same folder (it ignores the
two JSON files). Every path that comes from a request is confined to its model's folder.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path, PurePosixPath

from . import config as cfg
from .codecs import ProtocolError

__all__ = ["Repository", "check_model_name"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
CONFIG_FILE = "config.pbtxt"
TRAFFIC_FILE = "traffic.json"
STATE_FILE = "server.json"
LOCK_FILE = ".server.lock"  # held by the serving process
START_LOCK_FILE = ".start.lock"  # held by a notebook while it starts one


def check_model_name(name: str) -> str:
    """A model name that is safe as a folder name, or a 400 saying what is allowed."""
    if not _NAME.match(name) or ".." in name:
        raise ProtocolError(
            f"invalid model name {name!r}: use letters, digits, '_', '-' and '.', starting "
            "with a letter or digit (at most 128 characters)"
        )
    return name


class Repository:
    """A Triton-layout model repository folder.

    Args:
        root: The folder (created if missing).
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).expanduser().resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def names(self) -> list[str]:
        """Models in the repository (folders with a valid name)."""
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and _NAME.match(p.name))

    def folder(self, name: str) -> Path:
        return self.root / check_model_name(name)

    def versions(self, name: str) -> list[int]:
        """Version numbers on disk, ascending."""
        folder = self.folder(name)
        if not folder.is_dir():
            return []
        return sorted(int(p.name) for p in folder.iterdir() if p.is_dir() and p.name.isdigit())

    def config(self, name: str) -> cfg.ModelConfig:
        """The model's ``config.pbtxt``, or an empty config (to be completed from the file)."""
        path = self.folder(name) / CONFIG_FILE
        if not path.is_file():
            return cfg.ModelConfig(name=name)
        config = cfg.from_text(path.read_text())
        config.name = config.name or name
        return config

    def model_file(self, name: str, version: int, config: cfg.ModelConfig) -> Path:
        return self.folder(name) / str(version) / (config.default_model_filename or "model.onnx")

    def traffic(self, name: str) -> dict[int, float] | None:
        """Saved traffic shares by version, if the model has any."""
        path = self.folder(name) / TRAFFIC_FILE
        if not path.is_file():
            return None
        return {int(k): float(v) for k, v in json.loads(path.read_text()).items()}

    def save_traffic(self, name: str, traffic: Mapping[int, float]) -> None:
        _write_atomic(
            self.folder(name) / TRAFFIC_FILE,
            json.dumps({str(k): v for k, v in sorted(traffic.items())}).encode(),
        )

    def save_config(self, name: str, config: cfg.ModelConfig) -> None:
        _write_atomic(self.folder(name) / CONFIG_FILE, cfg.to_text(config).encode())

    def stage(self, name: str, files: Mapping[str, bytes]) -> Path:
        """Write request files (``"1/model.onnx"`` -> bytes) into a fresh folder, checked.

        The caller loads from the staged folder and then :meth:`commit` s it, or deletes it.
        """
        targets = {_confined(path): data for path, data in files.items()}
        folder = self.folder(name)
        folder.mkdir(exist_ok=True)
        for relative in targets:
            _refuse_links(folder, relative)
        staging = Path(tempfile.mkdtemp(prefix=".incoming-", dir=folder))
        for relative, data in targets.items():
            target = staging / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        return staging

    def commit(self, name: str, staging: Path) -> None:
        """Move staged files into the model's folder, replacing files of the same name."""
        folder = self.folder(name)
        for source in sorted(p for p in staging.rglob("*") if p.is_file()):
            target = folder / source.relative_to(staging)
            target.parent.mkdir(parents=True, exist_ok=True)
            source.replace(target)
        shutil.rmtree(staging, ignore_errors=True)

    @property
    def state_file(self) -> Path:
        return self.root / STATE_FILE


def _confined(path: str) -> PurePosixPath:
    """A file override's path, if it stays inside the model's folder."""
    relative = PurePosixPath(path)
    if (
        not path
        or relative.is_absolute()
        or "\\" in path
        or any(part in ("..", "") for part in relative.parts)
        or relative.parts[0].startswith(".")
        or relative.name in (TRAFFIC_FILE,)
    ):
        raise ProtocolError(
            f"file override {path!r} must be a relative path inside the model's folder "
            "(no '..', no absolute paths), such as '1/model.onnx'"
        )
    return relative


def _refuse_links(folder: Path, relative: PurePosixPath) -> None:
    current = folder
    for part in relative.parts:
        current = current / part
        if current.is_symlink():
            raise ProtocolError(
                f"file override {str(relative)!r} goes through a link in the model's folder; "
                "links are not followed"
            )


def _write_atomic(path: Path, data: bytes) -> None:
    temp = path.with_name(f".{path.name}.tmp")
    temp.write_bytes(data)
    temp.replace(path)

"""The model repository on disk, in Triton's layout, which is the server's whole state::

    <repo>/<model>/config.pbtxt
    <repo>/<model>/<version>/model.onnx        (+ external data beside it)
    <repo>/<model>/traffic.json                which versions serve, and their shares
    <repo>/.staging/                           files on their way in (cleared at start)
    <repo>/server.json                         the running server (pid, ports), if any

``tritonserver --model-repository <repo>`` serves the same folder (it ignores the JSON
files and dot-folders). Only the server process writes here, and in an order that leaves
a servable state if it is killed at any instant:

* a version folder is complete before it is moved into place (one ``rename``), and
  nothing names it before that;
* ``config.pbtxt`` and ``traffic.json`` are replaced atomically (write, fsync, rename);
* nothing a committed ``traffic.json`` names is ever deleted.

Every path that comes from a request is confined to its model's folder, and links are
never followed when writing.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path, PurePosixPath

from ..errors import ConfigError, DamagedFileError, ProtocolError
from . import config as cfg
from .faults import crash_point
from .layout import (
    CONFIG_FILE,
    MODEL_NAME,
    RESERVED_NAMES,
    STAGING,
    STATE_FILE,
    TRAFFIC_FILE,
    check_model_name,
)
from .parameters import decode_shares, version_number

log = logging.getLogger(__name__)

__all__ = ["Repository", "check_model_name", "is_version"]

MAX_NAME_BYTES = 255  # one path component, as Linux file systems allow


class Repository:
    """A Triton-layout model repository folder.

    Args:
        root: The folder (created if missing).
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).expanduser().resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    # -- reading --------------------------------------------------------------------------

    def names(self) -> list[str]:
        """Models in the repository (folders with a valid name)."""
        return sorted(
            p.name
            for p in self.root.iterdir()
            if p.is_dir() and MODEL_NAME.match(p.name) and p.name not in RESERVED_NAMES
        )

    def folder(self, name: str) -> Path:
        """The model's folder; a model folder that is a link is refused (never written
        through, never served)."""
        folder = self.root / check_model_name(name)
        if folder.is_symlink():
            raise ProtocolError(
                f"the folder of model '{name}' is a link; links are not followed. Copy the "
                "model into the repository instead"
            )
        return folder

    def versions(self, name: str) -> list[int]:
        """Version numbers on disk, ascending."""
        folder = self.folder(name)
        if not folder.is_dir():
            return []
        return sorted(int(p.name) for p in folder.iterdir() if p.is_dir() and is_version(p.name))

    def config(self, name: str) -> cfg.ModelConfig:
        """The model's ``config.pbtxt``, or an empty config (to be completed from the file)."""
        path = self.folder(name) / CONFIG_FILE
        if not path.is_file():
            return cfg.ModelConfig(name=name)
        try:
            config = cfg.from_text(path.read_text())
        except (ConfigError, UnicodeDecodeError) as err:
            raise DamagedFileError(f"model '{name}': {err}") from err
        config.name = config.name or name
        return config

    def model_file(self, name: str, version: int, config: cfg.ModelConfig) -> Path:
        return self.folder(name) / str(version) / (config.default_model_filename or "model.onnx")

    def traffic(self, name: str) -> dict[int, float] | None:
        """Saved traffic shares by version (``{}``: unloaded on purpose), ``None`` if the
        model has none; :class:`DamagedFileError` if the file is not a valid traffic map."""
        path = self.folder(name) / TRAFFIC_FILE
        if not path.is_file():
            return None
        try:
            return decode_shares(json.loads(path.read_bytes()), str(path))
        except (ValueError, ProtocolError) as err:
            raise DamagedFileError(f"{path} is damaged: {err}") from err

    @property
    def state_file(self) -> Path:
        return self.root / STATE_FILE

    @property
    def staging_area(self) -> Path:
        """Where files wait before the server moves them into a model's folder."""
        return self.root / STAGING

    # -- writing (the server process only) --------------------------------------------------

    def save_traffic(self, name: str, traffic: Mapping[int, float]) -> None:
        """Replace ``traffic.json`` atomically (``{}`` records an unload)."""
        body = json.dumps({str(k): v for k, v in sorted(traffic.items())}).encode()
        with self.writing():
            _write_atomic(self.folder(name) / TRAFFIC_FILE, body)
        crash_point("traffic-saved")

    def save_config(self, name: str, config: cfg.ModelConfig) -> None:
        with self.writing():
            _write_atomic(self.folder(name) / CONFIG_FILE, cfg.to_text(config).encode())
        crash_point("config-saved")

    def stage(self, files: Mapping[str, bytes]) -> Path:
        """Write request files (``"1/model.onnx"`` -> bytes) into a fresh staging folder,
        every path checked first. The caller moves it in with :meth:`commit` or drops it."""
        targets = {_confined(path): data for path, data in files.items()}
        with self.writing():
            self.staging_area.mkdir(exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix="load-", dir=self.staging_area))
            try:
                for relative, data in targets.items():
                    target = staging / relative
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(data)
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
        crash_point("staged")
        return staging

    def staged(self, token: str) -> Path:
        """A folder a client staged under :attr:`staging_area` (by its name), checked."""
        folder = self.staging_area / token
        if "/" in token or token.startswith(".") or not folder.is_dir() or folder.is_symlink():
            raise ProtocolError(
                f"no staged folder {token!r} under {self.staging_area} (a server restart "
                "clears it; stage the files again)"
            )
        return folder

    def commit(self, name: str, versions: Mapping[int, Path], files: Path | None) -> None:
        """Move new version folders into the model's folder, each whole in one rename, and
        the request's other files (``files``: a staging folder) beside them."""
        folder = self.folder(name)
        with self.writing():
            folder.mkdir(exist_ok=True)
            for number, source in sorted(versions.items()):
                target = folder / str(number)
                if target.is_symlink():
                    raise ProtocolError(f"model '{name}' version {number} is a link; not replaced")
                if target.exists():
                    _replace_files(source, target)  # Triton's overrides replace files in place
                else:
                    source.rename(target)
                crash_point("version-committed")
            if files is not None:
                _replace_files(files, folder, skip_versions=True)

    def clear_staging(self) -> None:
        """Drop files left on their way in by a server that was killed (at start only)."""
        shutil.rmtree(self.staging_area, ignore_errors=True)
        for name in self.names():  # folders of versions before 0.2 staged here
            for stray in (self.root / name).glob(".incoming-*"):
                shutil.rmtree(stray, ignore_errors=True)

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        """Turn a failed write into a 503 that names the repository and the cause."""
        try:
            yield
        except OSError as err:
            if err.errno == errno.ENAMETOOLONG:
                raise ProtocolError(f"a file name is too long: {err.strerror}") from err
            raise ProtocolError(
                f"the repository {self.root} is not writable: {err.strerror or err}; free some "
                "space or fix its permissions, then try again (nothing was changed)",
                status=503,
            ) from err


def is_version(name: str) -> bool:
    try:
        version_number(name)
    except ProtocolError:
        return False
    return True


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
    if any(ord(c) < 32 or c == "\x7f" for c in path):
        raise ProtocolError(f"file override {path!r} has a control character in its name")
    if len(path.encode()) > 1024 or any(len(p.encode()) > MAX_NAME_BYTES for p in relative.parts):
        raise ProtocolError(
            f"file override {path[:60]!r}... is too long: at most {MAX_NAME_BYTES} bytes a "
            "name and 1024 in all"
        )
    return relative


def _replace_files(source: Path, target: Path, *, skip_versions: bool = False) -> None:
    """Move every file under ``source`` to the same place under ``target``, one atomic
    rename each; refuses to go through links in ``target``."""
    for item in sorted(p for p in source.rglob("*") if p.is_file()):
        relative = item.relative_to(source)
        if skip_versions and is_version(relative.parts[0]):
            continue
        current = target
        for part in relative.parts:
            current = current / part
            if current.is_symlink():
                raise ProtocolError(
                    f"file override {str(relative)!r} goes through a link in the model's "
                    "folder; links are not followed"
                )
        current.parent.mkdir(parents=True, exist_ok=True)
        item.replace(current)


def _write_atomic(path: Path, data: bytes) -> None:
    """Readers see the old file or the new one, whole, even after a crash."""
    if path.is_symlink():
        raise ProtocolError(f"{path} is a link; it is not written through")
    temp = path.with_name(f".{path.name}.tmp")
    with temp.open("wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    crash_point(f"{path.name}-temp-written")
    temp.replace(path)
    _fsync_folder(path.parent)


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

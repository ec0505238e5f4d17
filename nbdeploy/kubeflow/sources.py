"""The model files a training step leaves, by kind: how to recognise one, load it into
what :func:`nbdeploy.export` takes, and run it as the reference of a parity check.

One row per kind in :data:`KINDS`; a new kind is one more row.
A KFP artifact's file often has no suffix (``.../model``), so each kind also recognises
its first bytes.
"""

from __future__ import annotations

import shutil
import tempfile
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..types import Output, TensorSpec

__all__ = ["KINDS", "Reference", "SourceKind", "kind_of"]

Feed = dict[str, Any]
Reference = Callable[[Feed], Mapping[str, Output]]


@dataclass(frozen=True)
class SourceKind:
    """One kind of model file.

    Attributes:
        name: What ``kind=`` calls it.
        suffixes: File suffixes that name it.
        sniff: Whether a file's first bytes look like it (for files without a suffix).
        load: The file -> the model object (or path) :func:`nbdeploy.export` takes.
        reference: (model, example, the export's outputs) -> a function running the
            source model itself, outputs named like the export's; ``None`` where the
            source cannot run here.
    """

    name: str
    suffixes: tuple[str, ...]
    sniff: Callable[[Path, bytes], bool]
    load: Callable[[Path], Any]
    reference: Callable[[Any, Any, tuple[TensorSpec, ...]], Reference] | None


def _load_onnx(path: Path) -> Any:
    if path.suffix == ".onnx":
        return str(path)  # nbd.export reads .onnx paths itself (external data too)
    import onnx

    return onnx.load(str(path))


def _onnx_reference(model: Any, example: Any, outputs: tuple[TensorSpec, ...]) -> Reference:
    from ..exporters import export

    return export(model, name="source", progress=False).run


def _load_pickle(path: Path) -> Any:
    import joblib

    # A pickle runs code when loaded: load only files your own pipeline wrote.
    return joblib.load(path)


def _sklearn_reference(model: Any, example: Any, outputs: tuple[TensorSpec, ...]) -> Reference:
    from ..exporters._sklearn import source_reference

    return source_reference(model, example, outputs)


def _load_torchscript(path: Path) -> Any:
    from .._deps import require

    torch = require("torch", extra="torch", feature="Loading a TorchScript file")
    return torch.jit.load(str(path), map_location="cpu")


def _torch_reference(model: Any, example: Any, outputs: tuple[TensorSpec, ...]) -> Reference:
    from ..exporters._torch import source_reference

    return source_reference(model, example)


def _load_keras(path: Path) -> Any:
    from .. import _tensorflow

    keras = _tensorflow.keras("Loading a .keras file")
    if path.suffix == ".keras":
        return keras.saving.load_model(str(path))
    with tempfile.TemporaryDirectory() as tmp:  # Keras reads the format from the suffix
        named = Path(tmp) / "model.keras"
        shutil.copyfile(path, named)
        return keras.saving.load_model(str(named))


def _keras_reference(model: Any, example: Any, outputs: tuple[TensorSpec, ...]) -> Reference:
    from ..exporters._tensorflow import source_reference

    return source_reference(model, example)


def _zip_names(path: Path, head: bytes) -> set[str]:
    if not head.startswith(b"PK") or not zipfile.is_zipfile(path):
        return set()
    with zipfile.ZipFile(path) as archive:
        return set(archive.namelist())


def _is_torchscript(path: Path, head: bytes) -> bool:
    return any(name.endswith("data.pkl") for name in _zip_names(path, head))


def _is_keras(path: Path, head: bytes) -> bool:
    return {"config.json", "metadata.json"} <= _zip_names(path, head)


KINDS: tuple[SourceKind, ...] = (
    SourceKind("torchscript", (".pt", ".pth", ".torchscript"), _is_torchscript,
               _load_torchscript, _torch_reference),
    SourceKind("keras", (".keras",), _is_keras, _load_keras, _keras_reference),
    # A pickle (protocol 2+) and an uncompressed joblib file start with 0x80; a compressed
    # joblib file needs its suffix, or kind="sklearn".
    SourceKind("sklearn", (".joblib", ".pkl", ".pickle"),
               lambda _, head: head[:1] == b"\x80", _load_pickle, _sklearn_reference),
    # An ONNX file is a protobuf with no magic number: the kind left when others refuse.
    SourceKind("onnx", (".onnx",), lambda _, head: True, _load_onnx, _onnx_reference),
)  # fmt: skip


def kind_of(path: str | Path, kind: str = "auto") -> SourceKind:
    """The kind of the model file at ``path``: ``kind`` by name, else by suffix, else by
    its first bytes.

    Raises:
        ConfigError: ``kind`` names no known kind, or the file is missing.
    """
    by_name = {k.name: k for k in KINDS}
    if kind != "auto":
        if kind not in by_name:
            raise ConfigError(f"kind must be 'auto' or one of {sorted(by_name)}, not {kind!r}")
        return by_name[kind]
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"no model file at {file}: pass the file the training step wrote")
    for candidate in KINDS:
        if file.suffix.lower() in candidate.suffixes:
            return candidate
    with file.open("rb") as stream:
        head = stream.read(8)
    return next(k for k in KINDS if k.sniff(file, head))

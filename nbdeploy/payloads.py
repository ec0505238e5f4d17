"""What an artifact holds: the model itself, in one of the formats nbdeploy runs.

A payload owns how its model runs, saves and measures itself, and caches the runtime it
loads (an onnxruntime session, a TorchScript module), so that :class:`~nbdeploy.Artifact`
stays a frozen record of facts. Payloads are immutable too; artifacts derived from one
another without a new model share theirs, and with it its loaded sessions.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import tempfile
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Literal, TypeAlias, TypeVar

import numpy as np
import onnx

from . import _onnxio, _tensorflow, _torchscript
from .errors import ArtifactError
from .server.layout import META_PREFIX
from .types import Output

if TYPE_CHECKING:
    import onnxruntime as ort
    from torch.jit import ScriptModule

__all__ = [
    "Format",
    "OnnxPayload",
    "Payload",
    "SavedModelPayload",
    "TorchScriptPayload",
    "session_options",
]

Format: TypeAlias = Literal["onnx", "torchscript", "savedmodel"]
Feed: TypeAlias = Mapping[str, np.ndarray]
DEFAULT_PROVIDERS = ("CPUExecutionProvider",)
TORCHSCRIPT_META = "nbdeploy.json"  # the extra file holding them in a TorchScript archive
R = TypeVar("R")


class _Runtimes(Generic[R]):
    """Runtimes a payload loaded (sessions, modules), by what they were loaded with.

    Built on first use and kept while the process's runtimes fit in ``RUNTIME_BUDGET``
    bytes of weights (the least recently used go first: a session holds a second copy of
    its model's weights, and a notebook holds many models); a copy or an unpickled
    payload starts with none, since a loaded runtime can be neither copied nor pickled.
    """

    def __init__(self) -> None:
        self._by_key: dict[tuple[object, ...], R] = {}

    def get(self, key: tuple[object, ...], load: Callable[[], R], weight: int = 0) -> R:
        """The runtime loaded for ``key`` (``weight`` bytes), loading it on first use."""
        with _BUDGET_LOCK:
            if key in self._by_key:
                _LOADED.move_to_end((id(self), key))
                return self._by_key[key]
        runtime = load()
        with _BUDGET_LOCK:
            self._by_key[key] = runtime
            _LOADED[(id(self), key)] = (weakref.ref(self), weight)
            _within_budget(keep=(id(self), key))
        return runtime

    def drop(self, key: tuple[object, ...]) -> None:
        """Forget a runtime (the budget's eviction)."""
        self._by_key.pop(key, None)

    def __reduce__(self) -> tuple[type[_Runtimes[R]], tuple[()]]:
        return type(self), ()

    def __repr__(self) -> str:
        return f"<{len(self._by_key)} loaded>"


RUNTIME_BUDGET = int(float(os.environ.get("NBDEPLOY_RUNTIME_BUDGET_BYTES", 2 * 2**30)))
_BUDGET_LOCK = threading.RLock()
# Every loaded runtime, least recently used first: (payload's runtimes, key) -> weight.
_LOADED: OrderedDict[tuple[int, tuple[object, ...]], tuple[weakref.ref[Any], int]] = OrderedDict()


def _within_budget(keep: tuple[int, tuple[object, ...]]) -> None:
    """Drop the least recently used runtimes until the rest fit ``RUNTIME_BUDGET`` (the
    one just loaded stays, whatever its size)."""
    for entry, (ref, _) in list(_LOADED.items()):
        owner = ref()
        if owner is None:  # its payload is gone, and the runtime with it
            del _LOADED[entry]
    total = sum(weight for _, weight in _LOADED.values())
    for entry in list(_LOADED):
        if total <= RUNTIME_BUDGET:
            break
        if entry == keep:
            continue
        ref, weight = _LOADED.pop(entry)
        owner = ref()
        if owner is not None:
            owner.drop(entry[1])
        total -= weight


def session_options(config: Mapping[str, str]) -> ort.SessionOptions:
    """``onnxruntime.SessionOptions`` carrying these session config entries."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    for entry, value in config.items():
        options.add_session_config_entry(entry, value)
    return options


@dataclass(frozen=True, eq=False)
class OnnxPayload:
    """An ONNX model: one ``ModelProto`` in memory or, past protobuf's 2 GiB, a folder this
    payload owns (``model.onnx`` and its external data), deleted with the payload.

    Attributes:
        model: The model; for one kept on disk, its graph with external-data references.
        folder: The owned folder of a model kept on disk, else ``None``.
    """

    model: onnx.ModelProto
    folder: Path | None = None
    _runtimes: _Runtimes[ort.InferenceSession] = field(
        default_factory=_Runtimes, init=False, repr=False
    )

    format: ClassVar[Literal["onnx"]] = "onnx"
    suffix: ClassVar[str] = ".onnx"

    def __post_init__(self) -> None:
        if self.folder is not None:
            weakref.finalize(self, shutil.rmtree, self.folder, ignore_errors=True)

    @classmethod
    def of(cls, model: onnx.ModelProto) -> OnnxPayload:
        """A payload for ``model``, which it may own: one with ``ON_DISK_BYTES`` of weights
        or more (256 MiB) moves to a folder, its weights into external data."""
        if _onnxio.tensor_bytes(model) < _onnxio.ON_DISK_BYTES:
            return cls(model)
        return cls._in_folder(model, lambda path: _onnxio.write_external(model, path))

    @classmethod
    def adopt(cls, path: Path, model: onnx.ModelProto, *, move: bool = False) -> OnnxPayload:
        """A payload for the ONNX file at ``path`` whose graph (without external data) is
        ``model``. Its external data is moved (``move=True``, for files nbdeploy wrote)
        or copied into a folder of its own, so the source can go away. Data files may sit
        in subfolders of the model's folder, never behind links.

        Raises:
            ArtifactError: A data file is missing, outside the model's folder, or linked.
        """
        if not _onnxio.has_external_data(model):
            return cls.of(model)  # a large one read whole moves to a folder of its own
        sources = {loc: _onnxio.data_source(path.parent, loc) for loc in _onnxio.data_files(model)}

        def fill(target: Path) -> None:
            for location, source in sources.items():
                _onnxio.transfer(source, target.parent / location, move=move)
            onnx.save_model(model, target)

        return cls._in_folder(model, fill)

    @classmethod
    def _in_folder(cls, model: onnx.ModelProto, fill: Callable[[Path], None]) -> OnnxPayload:
        """A payload that owns a new folder, which ``fill`` writes ``model.onnx`` into."""
        folder = Path(tempfile.mkdtemp(prefix="nbdeploy-"))
        try:
            fill(folder / _onnxio.MODEL_FILE)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        return cls(model, folder)

    @classmethod
    def read(cls, path: Path) -> tuple[OnnxPayload, dict[str, str]]:
        """The payload of an ``.onnx`` file and the nbdeploy metadata it carries.

        Raises:
            ArtifactError: The file is not ONNX, or its external data is unusable.
        """
        try:
            model = onnx.load(path, load_external_data=False)
        except Exception as err:
            raise ArtifactError(f"'{path}' is not an ONNX model ({err}).") from err
        meta = {
            key.removeprefix(META_PREFIX): value
            for key, value in _onnxio.metadata(model).items()
            if key.startswith(META_PREFIX)
        }
        # The artifact carries these as fields; a payload's model never holds them, so
        # saving can append the new ones without duplicating keys (see save).
        _onnxio.drop_metadata(model, META_PREFIX)
        return cls.adopt(path, model), meta

    def whole(self) -> onnx.ModelProto:
        """A model of the caller's own with every weight in memory: a copy, or for one
        kept on disk, read from its files (for steps that rewrite weights; their result
        goes back to disk if it is still past 2 GiB)."""
        if self.path is not None:
            return onnx.load(self.path)
        model = onnx.ModelProto()
        model.CopyFrom(self.model)
        return model

    @property
    def path(self) -> Path | None:
        """The file of a model kept on disk, else ``None``."""
        return self.folder / _onnxio.MODEL_FILE if self.folder else None

    @functools.cached_property
    def size_bytes(self) -> int:
        """Size of the model as saved (graph and weights). Measured once: protobuf sizes
        a model by walking it (seconds past a GiB), and a payload never changes."""
        if self.folder is not None:
            return sum(f.stat().st_size for f in self.folder.rglob("*") if f.is_file())
        return int(self.model.ByteSize())

    def session(
        self,
        providers: Sequence[str] = DEFAULT_PROVIDERS,
        session_config: Mapping[str, str] | None = None,
    ) -> ort.InferenceSession:
        """A cached ``onnxruntime.InferenceSession`` for these providers and config entries.

        Raises:
            ArtifactError: onnxruntime cannot load the model.
        """
        config = dict(session_config or {})
        key = (tuple(providers), tuple(sorted(config.items())))
        return self._runtimes.get(key, lambda: self._load(providers, config), self.size_bytes)

    def _load(self, providers: Sequence[str], config: Mapping[str, str]) -> ort.InferenceSession:
        import onnxruntime as ort

        path = self.path
        source = str(path) if path is not None else self.model.SerializeToString()
        try:
            return ort.InferenceSession(source, session_options(config), providers=list(providers))
        except Exception as err:  # onnxruntime raises its own untyped errors
            raise ArtifactError(f"onnxruntime cannot load the model: {err}") from err

    def run(
        self,
        feed: Feed,
        *,
        providers: Sequence[str] = DEFAULT_PROVIDERS,
        session_config: Mapping[str, str] | None = None,
    ) -> dict[str, Output]:
        """Run the model with onnxruntime; outputs by name, in graph order.

        Raises:
            ArtifactError: onnxruntime cannot load or run the model.
        """
        session = self.session(providers, session_config)
        try:
            values = session.run(None, dict(feed))
        except Exception as err:  # onnxruntime raises its own untyped errors
            raise ArtifactError(f"onnxruntime could not run the model: {err}") from err
        names = [value.name for value in session.get_outputs()]
        return {name: _output(value) for name, value in zip(names, values, strict=True)}

    def save(self, path: Path, meta: Mapping[str, str]) -> None:
        """Write the model to ``path`` with ``meta`` in its metadata. External data goes
        beside it, into one file, ``<file>.data``."""
        entries = {META_PREFIX + k: v for k, v in meta.items()}
        ours = any(p.key.startswith(META_PREFIX) for p in self.model.metadata_props)
        if self.folder is None and not ours:
            # Protobuf merges concatenated messages (repeated fields append): the model's
            # bytes, then a message holding only the metadata — no copy of the weights.
            extra = onnx.ModelProto()
            _onnxio.set_metadata(extra, entries)
            with path.open("wb") as file:
                file.write(self.model.SerializeToString())
                file.write(extra.SerializeToString())
            return
        model = onnx.ModelProto()
        model.CopyFrom(self.model)  # kept on disk, the graph alone: its weights are in files
        _onnxio.set_metadata(model, entries)
        if self.folder is not None:
            files = _onnxio.data_files(model)
            if len(files) > 1:
                # One target name for several files would overwrite them, and each tensor's
                # offset only holds in its own file: onnx rewrites them into one.
                _onnxio.gather_external(model, self.folder, path)
                return
            for location in files:  # just one: copied as is, its offsets still hold
                target = f"{path.name}.data"
                _onnxio.transfer(self.folder / location, path.parent / target, move=False)
                _onnxio.relocate(model, {location: target})
        onnx.save_model(model, path)


@dataclass(frozen=True, eq=False)
class TorchScriptPayload:
    """A TorchScript archive, run with torch.

    Attributes:
        archive: The archive's bytes (``torch.jit.load`` reads them).
        keyword: The module takes its inputs as keyword tensors, not positional ones.
    """

    archive: bytes = field(repr=False)
    keyword: bool = False
    _runtimes: _Runtimes[ScriptModule] = field(default_factory=_Runtimes, init=False, repr=False)

    format: ClassVar[Literal["torchscript"]] = "torchscript"
    suffix: ClassVar[str] = ".pt"

    @classmethod
    def read(cls, path: Path) -> tuple[TorchScriptPayload, dict[str, str]]:
        """The payload of a TorchScript file and the nbdeploy metadata it carries.

        Raises:
            ArtifactError: The file is not TorchScript (the message says what it is), or
                its nbdeploy metadata is unreadable.
        """
        data, module, extra = _torchscript.load(path, TORCHSCRIPT_META)
        try:
            meta = {str(k): str(v) for k, v in json.loads(extra).items()} if extra else {}
        except (ValueError, AttributeError) as err:
            raise ArtifactError(f"'{path}' has unreadable nbdeploy metadata: {err}") from err
        payload = cls(data, keyword=_call_style(meta) == "keyword")
        payload._runtimes.get(("module",), lambda: module)  # loaded already: keep it
        return payload, meta

    @property
    def size_bytes(self) -> int:
        """Size of the archive."""
        return len(self.archive)

    def module(self) -> ScriptModule:
        """The loaded module (cached), in eval mode on the CPU."""
        return self._runtimes.get(("module",), lambda: _torchscript.load_module(self.archive),
                                  self.size_bytes)  # fmt: skip

    def session(
        self,
        providers: Sequence[str] = DEFAULT_PROVIDERS,
        session_config: Mapping[str, str] | None = None,
    ) -> ScriptModule:
        """The loaded module: TorchScript runs in torch, whatever the providers."""
        return self.module()

    def run(
        self,
        feed: Feed,
        *,
        providers: Sequence[str] = DEFAULT_PROVIDERS,
        session_config: Mapping[str, str] | None = None,
    ) -> dict[str, Output]:
        """Run the module with torch; outputs named by their place in its result."""
        return dict(_torchscript.run(self.module(), feed, keyword=self.keyword))

    def save(self, path: Path, meta: Mapping[str, str]) -> None:
        """Write the archive to ``path`` with ``meta`` inside it, in one ``torch.jit.save``."""
        meta = {**meta, "call": "keyword" if self.keyword else "positional"}
        _torchscript.save(self.module(), path, {TORCHSCRIPT_META: json.dumps(meta)})


@dataclass(frozen=True, eq=False)
class SavedModelPayload:
    """A TensorFlow SavedModel: a folder this payload owns (deleted with it), run through
    its ``serving_default`` signature with TensorFlow — and served by Triton's
    ``tensorflow`` backend or TF Serving, not by onnxruntime.

    Attributes:
        folder: The SavedModel folder (``saved_model.pb``, ``variables/``, ...).
    """

    folder: Path
    _runtimes: _Runtimes[_tensorflow.Signature] = field(
        default_factory=_Runtimes, init=False, repr=False
    )

    format: ClassVar[Literal["savedmodel"]] = "savedmodel"
    suffix: ClassVar[str] = ".savedmodel"

    def __post_init__(self) -> None:
        weakref.finalize(self, shutil.rmtree, self.folder, ignore_errors=True)

    @classmethod
    def copy_of(cls, source: Path) -> SavedModelPayload:
        """A payload owning a copy of the SavedModel folder at ``source``."""
        folder = Path(tempfile.mkdtemp(prefix="nbdeploy-")) / "model.savedmodel"
        try:
            ours = shutil.ignore_patterns(_tensorflow.META_FILE.name)
            shutil.copytree(source, folder, ignore=ours)
        except BaseException:
            shutil.rmtree(folder.parent, ignore_errors=True)
            raise
        return cls(folder)

    @classmethod
    def read(cls, path: Path) -> tuple[SavedModelPayload, dict[str, str]]:
        """The payload of a SavedModel folder and the nbdeploy metadata it carries."""
        return cls.copy_of(path), _tensorflow.read_meta(path)

    @functools.cached_property
    def size_bytes(self) -> int:
        """Size of the folder's files."""
        return sum(f.stat().st_size for f in self.folder.rglob("*") if f.is_file())

    def signature(self) -> _tensorflow.Signature:
        """The loaded ``serving_default`` signature (cached)."""
        return self._runtimes.get(("signature",), lambda: _tensorflow.Signature(self.folder),
                                  self.size_bytes)  # fmt: skip

    def session(
        self,
        providers: Sequence[str] = DEFAULT_PROVIDERS,
        session_config: Mapping[str, str] | None = None,
    ) -> _tensorflow.Signature:
        """The loaded signature: a SavedModel runs in TensorFlow, whatever the providers."""
        return self.signature()

    def run(
        self,
        feed: Feed,
        *,
        providers: Sequence[str] = DEFAULT_PROVIDERS,
        session_config: Mapping[str, str] | None = None,
    ) -> dict[str, Output]:
        """Run the signature with TensorFlow; outputs by the signature's names."""
        return dict(self.signature()(feed))

    def save(self, path: Path, meta: Mapping[str, str]) -> None:
        """Copy the SavedModel to the folder ``path``, ``meta`` inside its ``assets.extra``."""
        if path.exists():
            raise ArtifactError(f"'{path}' exists; save a SavedModel to a new folder.")
        shutil.copytree(self.folder, path)
        _tensorflow.write_meta(path, meta)


Payload: TypeAlias = OnnxPayload | TorchScriptPayload | SavedModelPayload
"""The model an artifact holds."""


def _call_style(meta: Mapping[str, str]) -> str | None:
    """How a saved module is called: its own key, else (files saved before it had one)
    what the export step of its lineage says."""
    if "call" in meta:
        return meta["call"]
    try:
        steps = json.loads(meta.get("lineage", "{}")).get("steps", [])
        exports = [s.get("detail", {}) for s in steps if s.get("kind") == "export"]
    except (ValueError, AttributeError):
        return None  # the artifact reports unreadable lineage itself
    call = exports[-1].get("call") if exports else None
    return call if isinstance(call, str) else None


def _output(value: object) -> Output:
    """An onnxruntime output as nbdeploy returns it: sequences stay lists (their tensors
    may differ in shape, so they cannot always stack into one array), maps stay dicts."""
    if isinstance(value, list):
        return [_output(item) for item in value]
    if isinstance(value, dict):
        return dict(value)
    return np.asarray(value)

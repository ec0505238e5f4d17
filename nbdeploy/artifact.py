"""The one object that travels through nbdeploy: :class:`Artifact`."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnx

from . import _html, _onnxio
from ._feed import as_feed
from .errors import ArtifactError, NbDeployError
from .provenance import Lineage, Parity
from .types import Output, TensorSpec, specs_from_onnx

__all__ = ["Artifact", "load"]

Format = Literal["onnx", "torchscript"]
_META = "nbdeploy."  # prefix of the metadata keys nbdeploy owns in an ONNX file
_TS_EXTRA = "nbdeploy.json"  # extra file inside a TorchScript archive


class Artifact:
    """An exported model with its signature, its parity against the source, and its lineage.

    Artifacts are immutable: every nbdeploy step returns a new one. Build them with
    :func:`nbdeploy.export` or :func:`nbdeploy.load`, not directly.

    Attributes:
        name: A short name, used for files and deployments.
        format: ``"onnx"`` or ``"torchscript"``.
        inputs: Input specs; a dynamic batch dimension is named ``"batch"``.
        outputs: Output specs.
        parity: Errors against the source model, or ``None`` when nothing was compared.
        lineage: Source framework and every transformation applied.
    """

    def __init__(
        self,
        *,
        name: str,
        format: Format,
        inputs: Sequence[TensorSpec],
        outputs: Sequence[TensorSpec],
        lineage: Lineage,
        parity: Parity | None = None,
        onnx_model: onnx.ModelProto | None = None,
        torchscript: bytes | None = None,
        folder: Path | None = None,
        example: dict[str, np.ndarray] | None = None,
    ) -> None:
        self.name = name
        self.format: Format = format
        self.inputs = tuple(inputs)
        self.outputs = tuple(outputs)
        self.lineage = lineage
        self.parity = parity
        self._onnx = onnx_model
        self._torchscript = torchscript
        self._folder = folder  # for models past 2 GiB: model.onnx + external data
        self.example = example  # inputs parity was checked on; later steps re-check on them
        self.report: Any = None  # what the step that made this artifact reported
        # onnxruntime session config entries this model needs to run at its best (e.g.
        # weight-only quantized models fold their DequantizeLinear nodes at load time).
        self.session_config: dict[str, str] = {}
        self._sessions: dict[tuple[str, ...], Any] = {}
        self._owner: _onnxio.OwnedFolder | None = None

    @classmethod
    def from_onnx(
        cls,
        model: onnx.ModelProto,
        *,
        name: str,
        lineage: Lineage,
        parity: Parity | None = None,
        example: dict[str, np.ndarray] | None = None,
    ) -> Artifact:
        """Wrap an ONNX model this artifact may own (large ones move to an owned folder)."""
        art = cls(
            name=name,
            format="onnx",
            inputs=specs_from_onnx(_graph_inputs(model)),
            outputs=specs_from_onnx(model.graph.output),
            lineage=lineage,
            parity=parity,
            onnx_model=model,
            example=example,
        )
        if _onnxio.tensor_bytes(model) >= _onnxio.LARGE_MODEL_BYTES:
            folder = art._own_folder()
            _onnxio.write_external(model, folder / _onnxio.MODEL_FILE)
        return art

    def _own_folder(self) -> Path:
        if self._owner is None:
            self._owner = _onnxio.OwnedFolder(self)
            self._folder = self._owner.path
        return self._owner.path

    def parity_against(
        self, parent: Artifact, *, reference: str, atol: float, rtol: float
    ) -> Parity:
        """How this artifact's outputs compare with ``parent``'s on the parent's example
        (random inputs of the right shape and dtype when it has none)."""
        from ._feed import batch_size, random_feed
        from .provenance import compare_outputs

        feed = parent.example if parent.example is not None else random_feed(parent.inputs)
        want, got = parent.run(feed), self.run(feed)
        checks = compare_outputs(got, want, batch_size=batch_size(feed), atol=atol, rtol=rtol)
        return Parity(reference, atol, rtol, tuple(checks))

    def derive(
        self, *, onnx_model: onnx.ModelProto, step: str, parity: Parity | None, **detail: Any
    ) -> Artifact:
        """A new artifact from a transformed model, with one more lineage step."""
        return Artifact.from_onnx(
            onnx_model,
            name=self.name,
            lineage=self.lineage.then(step, **detail),
            parity=parity,
            example=self.example,
        )

    @property
    def onnx(self) -> onnx.ModelProto:
        """The ONNX model (for models past 2 GiB, its graph with external-data references)."""
        if self._onnx is None:
            raise ArtifactError(
                f"artifact '{self.name}' is {self.format}, not ONNX; export with format='onnx'."
            )
        return self._onnx

    @property
    def torchscript(self) -> bytes:
        """The TorchScript archive bytes (``torch.jit.load`` reads them)."""
        if self._torchscript is None:
            raise ArtifactError(f"artifact '{self.name}' is {self.format}, not TorchScript.")
        return self._torchscript

    @property
    def onnx_path(self) -> Path | None:
        """The file of a model kept on disk (past 2 GiB), else ``None``."""
        return self._folder / _onnxio.MODEL_FILE if self._folder else None

    @property
    def size_bytes(self) -> int:
        """Size of the model as saved (graph and weights)."""
        if self._folder is not None:
            return sum(f.stat().st_size for f in self._folder.iterdir())
        if self._torchscript is not None:
            return len(self._torchscript)
        return int(self.onnx.ByteSize())

    def model_bytes(self) -> bytes:
        """The serialized ONNX model, for models that fit in one protobuf."""
        if self._folder is not None:
            raise ArtifactError(
                f"artifact '{self.name}' is larger than 2 GiB and has no single-buffer form; "
                f"use art.save(path) or art.onnx_path."
            )
        return bytes(self.onnx.SerializeToString())

    # -- running -------------------------------------------------------------------------

    def run(
        self, inputs: Any, *, providers: Sequence[str] = ("CPUExecutionProvider",)
    ) -> dict[str, Output]:
        """Run the model: onnxruntime for ONNX, torch for TorchScript.

        Args:
            inputs: A dict by input name, a tuple in input order, or one array for a
                single-input model. Dtypes of the same kind are converted.
            providers: onnxruntime execution providers, in order of preference.

        Returns:
            Outputs by name: an array for each tensor output, a list for a sequence
            output (a classifier's ZipMap gives a list of ``{label: probability}``
            dicts), a dict for a map output.
        """
        feed = as_feed(inputs, self.inputs)
        if self.format == "torchscript":
            from .exporters._torch import run_torchscript

            outs = run_torchscript(self.session(), feed, self._export_detail("call") == "keyword")
            return {spec.name: outs[spec.name] for spec in self.outputs}
        session = self.session(providers)
        try:
            values = session.run(None, feed)
        except Exception as err:  # onnxruntime raises its own untyped errors
            raise ArtifactError(f"onnxruntime could not run '{self.name}': {err}") from err
        return {spec.name: _output(v) for spec, v in zip(self.outputs, values, strict=True)}

    def _export_detail(self, key: str) -> Any:
        exports = [s for s in self.lineage.steps if s.kind == "export"]
        return exports[-1].detail.get(key) if exports else None

    def session(self, providers: Sequence[str] = ("CPUExecutionProvider",)) -> Any:
        """A cached ``onnxruntime.InferenceSession`` (a torch module for TorchScript)."""
        key = tuple(providers)
        if self.format == "torchscript" and key not in self._sessions:
            from .exporters._torch import load_module

            self._sessions[key] = load_module(self.torchscript)
        if key not in self._sessions:
            import onnxruntime as ort

            source: str | bytes = str(self.onnx_path) if self._folder else self.model_bytes()
            try:
                self._sessions[key] = ort.InferenceSession(
                    source, self.session_options(), providers=list(providers)
                )
            except Exception as err:
                raise ArtifactError(f"onnxruntime cannot load '{self.name}': {err}") from err
        return self._sessions[key]

    # -- files ---------------------------------------------------------------------------

    def save(self, path: str | Path) -> Path:
        """Write the model to ``path`` (``.onnx``, or ``.pt`` for TorchScript) and return it.

        Name, lineage and parity go into the file's metadata, so :func:`load` restores
        them. Models with external data (those past 2 GiB, or loaded with it) write
        their weights beside it in one file, ``<file>.data``.
        """
        path = Path(path)
        suffix = ".pt" if self.format == "torchscript" else ".onnx"
        if path.suffix != suffix:
            path = path.with_name(path.name + suffix)
        path.parent.mkdir(parents=True, exist_ok=True)
        if self.format == "torchscript":
            from .exporters._torch import save_torchscript

            save_torchscript(self.torchscript, path, {_TS_EXTRA: json.dumps(self._meta())})
            return path
        model = onnx.ModelProto()
        model.CopyFrom(self.onnx)
        _onnxio.set_metadata(model, {_META + k: v for k, v in self._meta().items()})
        if self._folder is not None:
            files = _onnxio.data_files(model)
            if len(files) > 1:
                # One target name for several files would overwrite them, and each tensor's
                # offset only holds in its own file: onnx rewrites them into one.
                _onnxio.gather_external(model, self._folder, path)
                return path
            for location in files:  # just one: copied as is, its offsets still hold
                target = f"{path.name}.data"
                _onnxio.transfer(self._folder / location, path.parent / target, move=False)
                _onnxio.relocate(model, {location: target})
        onnx.save_model(model, path)
        return path

    def session_options(self) -> Any:
        """``onnxruntime.SessionOptions`` carrying this artifact's session config."""
        import onnxruntime as ort

        options = ort.SessionOptions()
        for entry, value in self.session_config.items():
            options.add_session_config_entry(entry, value)
        return options

    def _meta(self) -> dict[str, str]:
        meta = {"name": self.name, "lineage": self.lineage.to_json()}
        if self.session_config:
            meta["session_config"] = json.dumps(self.session_config)
        if self.parity is not None:
            meta["parity"] = json.dumps(self.parity.to_dict())
        if self.format == "torchscript":
            meta["inputs"] = json.dumps([s.to_dict() for s in self.inputs])
            meta["outputs"] = json.dumps([s.to_dict() for s in self.outputs])
        return meta

    # -- display -------------------------------------------------------------------------

    def __repr__(self) -> str:
        ins = ", ".join(map(str, self.inputs))
        outs = ", ".join(map(str, self.outputs))
        parity = "unchecked" if self.parity is None else ("ok" if self.parity.ok else "MISMATCH")
        return (
            f"<Artifact '{self.name}' {self.format} {_html.human_bytes(self.size_bytes)} "
            f"({ins}) -> ({outs}), parity {parity}>"
        )

    def _repr_html_(self) -> str:
        parity: Any = "not checked"
        if self.parity is not None:
            parity = _html.verdict(self.parity.ok, str(self.parity))
        rows = [
            ("format", self.format),
            ("size", _html.human_bytes(self.size_bytes)),
            ("inputs", _html.code_lines(self.inputs)),
            ("outputs", _html.code_lines(self.outputs)),
            ("parity", parity),
            ("lineage", str(self.lineage)),
        ]
        return _html.card(f"Artifact '{self.name}'", _html.fields(rows))


def _output(value: Any) -> Output:
    """An onnxruntime output as nbdeploy returns it: sequences stay lists (their tensors
    may differ in shape, so they cannot always stack into one array), maps stay dicts."""
    if isinstance(value, list):
        return [_output(item) for item in value]
    if isinstance(value, dict):
        return dict(value)
    return np.asarray(value)


def _graph_inputs(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    # Old-style models list initializers as inputs too; those are not the model's inputs.
    weights = {init.name for init in model.graph.initializer}
    return [value for value in model.graph.input if value.name not in weights]


def load(path: str | Path) -> Artifact:
    """Load an artifact saved by :meth:`Artifact.save` (or any ``.onnx`` / TorchScript file).

    An ONNX model's external data files are copied, so the artifact does not depend on
    them later. They may sit in subfolders of the model's folder (``data/w.bin``), but
    never outside it nor behind links.

    Raises:
        ArtifactError: The file is missing or is neither ONNX nor TorchScript; for a
            ``.pt`` file written by ``torch.save`` (a state_dict or a pickled module) the
            message says so, and how to export the model instead. Also when an external
            data file is missing, outside the model's folder, or reached through a link.
    """
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"no model file at '{path}'.")
    if path.suffix in (".pt", ".pth", ".torchscript"):
        from .exporters._torch import load_torchscript

        data, extra = load_torchscript(path, _TS_EXTRA)
        meta = json.loads(extra) if extra else {}
        return Artifact(
            name=meta.get("name", path.stem),
            format="torchscript",
            inputs=[TensorSpec.from_dict(s) for s in json.loads(meta.get("inputs", "[]"))],
            outputs=[TensorSpec.from_dict(s) for s in json.loads(meta.get("outputs", "[]"))],
            lineage=_lineage(meta, path),
            parity=_parity(meta),
            torchscript=data,
        )
    try:
        model = onnx.load(path, load_external_data=False)
    except Exception as err:
        raise ArtifactError(f"'{path}' is not an ONNX model ({err}).") from err
    meta = {
        k.removeprefix(_META): v for k, v in _onnxio.metadata(model).items() if k.startswith(_META)
    }
    art = adopt(
        path,
        model,
        name=meta.get("name", path.stem),
        lineage=_lineage(meta, path),
        parity=_parity(meta),
    )
    art.session_config = json.loads(meta.get("session_config", "{}"))
    return art


def adopt(
    path: Path,
    model: onnx.ModelProto,
    *,
    name: str,
    lineage: Lineage,
    parity: Parity | None = None,
    move: bool = False,
) -> Artifact:
    """An artifact for the ONNX file at ``path`` whose graph (without external data) is
    ``model``. A model with external data gets its own folder with its data moved
    (``move=True``, for files nbdeploy wrote) or copied in, so the source can go away.
    Data files may sit in subfolders of the model's folder, never behind links."""
    if not _onnxio.has_external_data(model):
        return Artifact.from_onnx(model, name=name, lineage=lineage, parity=parity)
    sources = {loc: _onnxio.data_source(path.parent, loc) for loc in _onnxio.data_files(model)}
    art = Artifact(
        name=name,
        format="onnx",
        inputs=specs_from_onnx(_graph_inputs(model)),
        outputs=specs_from_onnx(model.graph.output),
        lineage=lineage,
        parity=parity,
        onnx_model=model,
    )
    folder = art._own_folder()
    for location, source in sources.items():
        _onnxio.transfer(source, folder / location, move=move)
    onnx.save_model(model, folder / _onnxio.MODEL_FILE)
    return art


def _lineage(meta: dict[str, str], path: Path) -> Lineage:
    if "lineage" in meta:
        try:
            return Lineage.from_json(meta["lineage"])
        except (ValueError, KeyError) as err:
            raise ArtifactError(f"'{path}' has unreadable nbdeploy lineage: {err}") from err
    return Lineage("onnx", onnx.__version__, f"file:{path.name}")


def _parity(meta: dict[str, str]) -> Parity | None:
    try:
        return Parity.from_dict(json.loads(meta["parity"])) if "parity" in meta else None
    except (ValueError, KeyError, TypeError) as err:
        raise NbDeployError(f"unreadable nbdeploy parity metadata: {err}") from err

"""The one object that travels through nbdeploy: :class:`Artifact`."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx

from . import _html, _tensorflow
from ._feed import as_feed, pack, unpack
from .errors import ArtifactError, ConfigError, NbDeployError
from .payloads import (
    Format,
    OnnxPayload,
    Payload,
    SavedModelPayload,
    TorchScriptPayload,
    session_options,
)
from .provenance import Lineage, Parity
from .reports import StepReport
from .types import Output, TensorSpec, specs_from_onnx

if TYPE_CHECKING:
    import onnxruntime as ort
    from torch.jit import ScriptModule

    from ._tensorflow import Signature

__all__ = ["Artifact", "adopt", "load", "require_onnx"]

_TORCHSCRIPT_SUFFIXES = (".pt", ".pth", ".torchscript")


@dataclass(frozen=True, eq=False, repr=False)
class Artifact:
    """An exported model with its signature, its parity against the source, and its lineage.

    Artifacts are immutable: every nbdeploy step returns a new one, which carries forward
    everything the step did not change. Build them with :func:`nbdeploy.export` or
    :func:`nbdeploy.load`, not directly.

    Attributes:
        name: A short name, used for files and deployments.
        payload: The model itself (:class:`~nbdeploy.payloads.OnnxPayload`,
            :class:`~nbdeploy.payloads.TorchScriptPayload` or
            :class:`~nbdeploy.payloads.SavedModelPayload`), which knows how to run and
            save itself.
        inputs: Input specs; a dynamic batch dimension is named ``"batch"``.
        outputs: Output specs.
        lineage: Source framework and every transformation applied.
        parity: Errors against the parent (the source model for an export), or ``None``
            when nothing was compared.
        example: The inputs parity was checked on; later steps check theirs on them too.
        session_config: onnxruntime session config entries this model needs to run at
            its best (weight-only quantized models fold their DequantizeLinear nodes at
            load time).
        report: What the step that made this artifact reported (``None`` after a load).
    """

    name: str
    payload: Payload
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    lineage: Lineage
    parity: Parity | None = None
    example: dict[str, np.ndarray] | None = None
    session_config: Mapping[str, str] = field(default_factory=dict)
    report: StepReport | None = None

    def __post_init__(self) -> None:
        # A copy, so a dict the caller keeps cannot change this artifact later.
        object.__setattr__(self, "session_config", dict(self.session_config))

    @classmethod
    def from_onnx(
        cls,
        model: onnx.ModelProto | OnnxPayload,
        *,
        name: str,
        lineage: Lineage,
        parity: Parity | None = None,
        example: dict[str, np.ndarray] | None = None,
        report: StepReport | None = None,
    ) -> Artifact:
        """An artifact for an ONNX model it may own (one past 2 GiB moves to a folder),
        with the signature the graph declares."""
        payload = model if isinstance(model, OnnxPayload) else OnnxPayload.of(model)
        inputs, outputs = _signature(payload.model)
        return cls(name, payload, inputs, outputs, lineage, parity, example, report=report)

    def derive(
        self,
        model: onnx.ModelProto | OnnxPayload,
        *,
        step: str,
        detail: Mapping[str, object] | None = None,
        parity: Parity | None = None,
        report: StepReport | None = None,
        session_config: Mapping[str, str] | None = None,
    ) -> Artifact:
        """A new artifact for a transformed ONNX model, with one more lineage step.

        Everything this artifact carries (name, example, session config, ...) moves
        forward unless given here; parity and report belong to the new step and are
        ``None`` unless given.
        """
        payload = model if isinstance(model, OnnxPayload) else OnnxPayload.of(model)
        inputs, outputs = _signature(payload.model)
        return dataclasses.replace(
            self,
            payload=payload,
            inputs=inputs,
            outputs=outputs,
            lineage=self.lineage.then(step, **(detail or {})),
            parity=parity,
            report=report,
            session_config=self.session_config if session_config is None else session_config,
        )

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

    # -- the model -----------------------------------------------------------------------

    @property
    def format(self) -> Format:
        """``"onnx"``, ``"torchscript"`` or ``"savedmodel"``."""
        return self.payload.format

    @property
    def onnx(self) -> onnx.ModelProto:
        """The ONNX model (for models past 2 GiB, its graph with external-data references)."""
        if not isinstance(self.payload, OnnxPayload):
            raise ArtifactError(
                f"artifact '{self.name}' is {self.format}, not ONNX; export with format='onnx'."
            )
        return self.payload.model

    @property
    def torchscript(self) -> bytes:
        """The TorchScript archive bytes (``torch.jit.load`` reads them)."""
        if not isinstance(self.payload, TorchScriptPayload):
            raise ArtifactError(f"artifact '{self.name}' is {self.format}, not TorchScript.")
        return self.payload.archive

    @property
    def onnx_path(self) -> Path | None:
        """The file of a model kept on disk (past 2 GiB), else ``None``."""
        return self.payload.path if isinstance(self.payload, OnnxPayload) else None

    @property
    def variant(self) -> str:
        """A short label of what this artifact is: its name and the last step after the
        export, e.g. ``"digits"``, ``"digits [optimize]"``, ``"digits [int8-dynamic]"``."""
        steps = [s for s in self.lineage.steps if s.kind != "export"]
        if not steps:
            return self.name
        last = steps[-1]
        return f"{self.name} [{last.detail.get('scheme', last.kind)}]"

    @property
    def size_bytes(self) -> int:
        """Size of the model as saved (graph and weights)."""
        return self.payload.size_bytes

    def model_bytes(self) -> bytes:
        """The serialized ONNX model, for models that fit in one protobuf."""
        if self.onnx_path is not None:
            raise ArtifactError(
                f"artifact '{self.name}' is larger than 2 GiB and has no single-buffer form; "
                f"use art.save(path) or art.onnx_path."
            )
        return bytes(self.onnx.SerializeToString())

    # -- running -------------------------------------------------------------------------

    def run(
        self, inputs: Any, *, providers: Sequence[str] = ("CPUExecutionProvider",)
    ) -> dict[str, Output]:
        """Run the model: onnxruntime for ONNX, torch for TorchScript, TensorFlow for a
        SavedModel.

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
        try:
            outs = self.payload.run(feed, providers=providers, session_config=self.session_config)
        except ArtifactError as err:
            raise ArtifactError(f"artifact '{self.name}': {err}") from err
        return {spec.name: outs[spec.name] for spec in self.outputs}

    def session(
        self, providers: Sequence[str] = ("CPUExecutionProvider",)
    ) -> ort.InferenceSession | ScriptModule | Signature:
        """A cached ``onnxruntime.InferenceSession`` (a torch module for TorchScript, the
        loaded signature for a SavedModel)."""
        try:
            return self.payload.session(providers, self.session_config)
        except ArtifactError as err:
            raise ArtifactError(f"artifact '{self.name}': {err}") from err

    def session_options(self) -> ort.SessionOptions:
        """``onnxruntime.SessionOptions`` carrying this artifact's session config."""
        return session_options(self.session_config)

    # -- files ---------------------------------------------------------------------------

    def save(self, path: str | Path) -> Path:
        """Write the model to ``path`` (``.onnx``; ``.pt`` for TorchScript; a folder
        ``.savedmodel`` for a SavedModel) and return it.

        Name, lineage, parity, session config and the example (up to 4 MiB) go into the
        file's metadata, so :func:`load` restores them. Models with external data (those
        past 2 GiB, or loaded with it) write their weights beside it in one file,
        ``<file>.data``.
        """
        path = Path(path)
        if path.suffix != self.payload.suffix:
            path = path.with_name(path.name + self.payload.suffix)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.payload.save(path, self._meta())
        return path

    def _meta(self) -> dict[str, str]:
        meta = {"name": self.name, "lineage": self.lineage.to_json()}
        if self.session_config:
            meta["session_config"] = json.dumps(dict(self.session_config))
        if self.parity is not None:
            meta["parity"] = json.dumps(self.parity.to_dict())
        if self.example is not None and (packed := pack(self.example)) is not None:
            meta["example"] = packed  # later steps check parity on it, as before saving
        if not isinstance(self.payload, OnnxPayload):  # its own signature is not ours
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
        parity: str = "not checked"
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


def require_onnx(
    art: Artifact,
    step: str,
    *,
    hint: str = "Export the model with format='onnx'.",
) -> OnnxPayload:
    """The ONNX payload of ``art``, for a step that works on ONNX models only.

    Args:
        art: The artifact the step was given.
        step: The step, for the message (``"optimize"``, ``"quantize"``, ...).
        hint: What to do instead, for the message.

    Raises:
        ConfigError: ``art`` is TorchScript.
    """
    payload = art.payload
    if not isinstance(payload, OnnxPayload):
        raise ConfigError(f"{step} works on ONNX artifacts; '{art.name}' is {art.format}. {hint}")
    return payload


def _signature(model: onnx.ModelProto) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
    # Old-style models list initializers as inputs too; those are not the model's inputs.
    weights = {init.name for init in model.graph.initializer}
    inputs = [value for value in model.graph.input if value.name not in weights]
    return specs_from_onnx(inputs), specs_from_onnx(model.graph.output)


def load(path: str | Path) -> Artifact:
    """Load an artifact saved by :meth:`Artifact.save`, or any model file nbdeploy runs:
    ``.onnx``, TorchScript (``.pt``), a SavedModel folder, or a Keras ``.keras`` file
    (exported to ONNX on load, its parity checked on inputs made from its signature).

    An ONNX model's external data files are copied, so the artifact does not depend on
    them later. They may sit in subfolders of the model's folder (``data/w.bin``), but
    never outside it nor behind links.

    Raises:
        ArtifactError: The path is missing or holds none of those; for a ``.pt`` file
            written by ``torch.save`` (a state_dict or a pickled module) the message says
            so, and how to export the model instead. Also when an external data file is
            missing, outside the model's folder, or reached through a link.
    """
    path = Path(path)
    payload: Payload
    if _tensorflow.is_savedmodel(path):
        payload, meta = SavedModelPayload.read(path)
        inputs, outputs = _declared(meta) or payload.signature().specs()
    elif not path.is_file():
        raise ArtifactError(f"no model file or SavedModel folder at '{path}'.")
    elif path.suffix == ".keras":
        return _load_keras(path)
    elif path.suffix in _TORCHSCRIPT_SUFFIXES:
        payload, meta = TorchScriptPayload.read(path)
        inputs, outputs = _declared(meta) or ((), ())
    else:
        payload, meta = OnnxPayload.read(path)
        inputs, outputs = _signature(payload.model)
    return Artifact(
        name=meta.get("name", path.stem),
        payload=payload,
        inputs=inputs,
        outputs=outputs,
        lineage=_lineage(meta, path, payload),
        parity=_parity(meta),
        example=unpack(meta["example"]) if "example" in meta else None,
        session_config=json.loads(meta.get("session_config", "{}")),
    )


def _declared(meta: Mapping[str, str]) -> tuple[tuple[TensorSpec, ...], ...] | None:
    """The signature nbdeploy stored beside a model whose format keeps none of its own."""
    if "inputs" not in meta:
        return None
    return tuple(
        tuple(TensorSpec.from_dict(s) for s in json.loads(meta.get(key, "[]")))
        for key in ("inputs", "outputs")
    )


def _load_keras(path: Path) -> Artifact:
    """A ``.keras`` file's model, exported to ONNX."""
    from .exporters import export

    keras = _tensorflow.keras("Loading a .keras file")
    try:
        model = keras.saving.load_model(path)
    except Exception as err:  # Keras raises many kinds for a file it cannot read
        raise ArtifactError(f"Keras cannot load '{path}': {err}") from err
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", path.stem).strip("_.-") or "model"
    return export(model, name=name, progress=False)


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
    ``model``; see :meth:`OnnxPayload.adopt <nbdeploy.payloads.OnnxPayload.adopt>`."""
    payload = OnnxPayload.adopt(path, model, move=move)
    return Artifact.from_onnx(payload, name=name, lineage=lineage, parity=parity)


def _lineage(meta: Mapping[str, str], path: Path, payload: Payload) -> Lineage:
    if "lineage" in meta:
        try:
            return Lineage.from_json(meta["lineage"])
        except (ValueError, KeyError) as err:
            raise ArtifactError(f"'{path}' has unreadable nbdeploy lineage: {err}") from err
    if isinstance(payload, SavedModelPayload):
        tf = _tensorflow.tensorflow("Loading a SavedModel")
        return Lineage("tensorflow", tf.__version__, f"file:{path.name}")
    return Lineage("onnx", onnx.__version__, f"file:{path.name}")


def _parity(meta: Mapping[str, str]) -> Parity | None:
    try:
        return Parity.from_dict(json.loads(meta["parity"])) if "parity" in meta else None
    except (ValueError, KeyError, TypeError) as err:
        raise NbDeployError(f"unreadable nbdeploy parity metadata: {err}") from err

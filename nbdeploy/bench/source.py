"""The model an artifact was exported from, measured by ``compare`` as a row of its own,
so "is the exported model faster than what I had?" is answered in the same table.

A source model runs in its own framework (torch eager, Keras on TensorFlow), fed the
same inputs as the artifacts, through a small session-like object: compare times it,
scores it and compares its answers exactly as it does an onnxruntime session's.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np

from .. import _tensorflow, _torchscript
from ..artifact import Artifact
from ..errors import ConfigError
from ..types import Outputs, TensorSpec

__all__ = ["Source", "is_source"]

Feed = Mapping[str, np.ndarray]
Runner = Callable[[Feed], Outputs]
# compare's provider names -> the device each framework runs a source model on.
_DEVICES = {"cpu": {"torch": "cpu", "tensorflow": "/CPU:0"},
            "cuda": {"torch": "cuda", "tensorflow": "/GPU:0"}}  # fmt: skip


def is_source(variant: object) -> bool:
    """Whether a variant given to compare is a model object rather than an artifact."""
    return not isinstance(variant, Artifact)


@dataclass(frozen=True, eq=False)
class Source:
    """A source model as a comparison variant.

    Attributes:
        model: The model object (a ``torch.nn.Module``, a Keras model, a ``tf.Module``).
        framework: ``"torch"`` or ``"tensorflow"``.
        variant: Its label in the table: the artifact's name and ``[torch eager]`` /
            ``[keras]`` / ``[tensorflow]``.
        inputs: The artifact's inputs, which the model is fed too.
        outputs: The artifact's outputs, whose names the model's results take.
        example: The artifact's example.
        call: How the export called the model (from its lineage).
    """

    model: Any
    framework: str
    variant: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    example: dict[str, np.ndarray] | None
    call: str

    @classmethod
    def of(cls, model: Any, exported: Artifact) -> Source:
        """The source row for ``model``, fed like ``exported`` (an artifact made from it).

        Raises:
            ConfigError: ``model`` is not a torch or TensorFlow model, or not of the class
                ``exported`` was made from.
        """
        from ..exporters import framework_of

        framework = framework_of(model)
        qualname = f"{type(model).__module__}.{type(model).__qualname__}"
        if framework not in ("torch", "tensorflow") or qualname != exported.lineage.model_class:
            raise ConfigError(
                f"compare takes a source model (torch or Keras/TensorFlow) next to artifacts "
                f"exported from it; {qualname} is not the {exported.lineage.model_class} "
                f"'{exported.name}' was exported from. Put the model first, then its artifacts."
            )
        exports = [s for s in exported.lineage.steps if s.kind == "export"]
        call = str(exports[0].detail.get("call", "")) if exports else ""
        label = "torch eager" if framework == "torch" else exported.lineage.framework
        return cls(model, framework, f"{exported.name} [{label}]", exported.inputs,
                   exported.outputs, exported.example, call)  # fmt: skip

    @functools.cached_property
    def size_bytes(self) -> int:
        """Bytes of the model's weights in memory."""
        if self.framework == "torch":
            tensors = [*self.model.parameters(), *self.model.buffers()]
            return sum(t.numel() * t.element_size() for t in tensors)
        return sum(int(np.prod(v.shape)) * np.dtype(getattr(v.dtype, "name", str(v.dtype))).itemsize
                   for v in self.model.variables)  # fmt: skip

    def unavailable_reason(self, provider: str) -> str | None:
        """Why the model cannot run on ``provider``, or ``None`` when it can."""
        if provider not in _DEVICES:
            return f"the source model runs in {self.framework}, not on onnxruntime's {provider}"
        if provider == "cuda" and not _has_gpu(self.framework):
            return f"{self.framework} sees no GPU here"
        return None

    def session(self, provider: str) -> _Eager:
        """A session-like runner of the model on ``provider``'s device."""
        device = _DEVICES[provider][self.framework]
        run = _torch_runner(self, device) if self.framework == "torch" else _tf_runner(self, device)
        return _Eager(run, [spec.name for spec in self.outputs])


class _Eager:
    """The two methods of ``onnxruntime.InferenceSession`` that compare calls."""

    def __init__(self, run: Runner, names: list[str]) -> None:
        self._run, self._names = run, names

    def get_outputs(self) -> list[SimpleNamespace]:
        return [SimpleNamespace(name=name) for name in self._names]

    def run(self, _: object, feed: Feed) -> list[np.ndarray]:
        result = self._run(feed)
        values = list(result.values())
        return [result.get(name, values[i]) for i, name in enumerate(self._names)]


def _torch_runner(source: Source, device: str) -> Runner:
    import torch

    model = source.model if device == "cpu" else copy.deepcopy(source.model).to(device)
    keyword = source.call == "keyword"

    def run(feed: Feed) -> Outputs:
        args, kwargs = _torchscript.tensors(feed, keyword=keyword)
        args = tuple(a.to(device) for a in args)
        kwargs = {k: v.to(device) for k, v in kwargs.items()}
        with _eval(model), torch.inference_mode():
            return _torchscript.flatten_outputs(model(*args, **kwargs))

    return run


def _eval(model: Any) -> Any:
    """Inference mode for one call (the user's training flags given back after), at no
    cost for a model already in eval mode: compare times these calls."""
    import contextlib

    from ..exporters._torch import _eval_mode

    return _eval_mode(model) if model.training else contextlib.nullcontext()


def _tf_runner(source: Source, device: str) -> Runner:
    from ..exporters._tensorflow import call_of

    call = call_of(source.model, source.inputs, source.call)
    tf = _tensorflow.tensorflow("Running a TensorFlow model")

    def run(feed: Feed) -> Outputs:
        with tf.device(device):
            return call.reference(feed)

    return run


def _has_gpu(framework: str) -> bool:
    if framework == "torch":
        import torch

        return bool(torch.cuda.is_available())
    tf = _tensorflow.tensorflow("Looking for a GPU")
    return bool(tf.config.list_physical_devices("GPU"))

"""One model version on onnxruntime: load, check a request against the signature, run.

Runs are synchronous; the batcher calls them from ``instances`` threads at once, like
Triton's instance groups (one onnxruntime session is safe to run concurrently, and
releases the GIL while it computes).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .. import _onnxio
from ..errors import ArtifactError, ProtocolError
from ..types import TensorSpec
from . import config as cfg
from .classification import read_labels
from .codecs import V2_TO_NUMPY
from .lineage import describe

log = logging.getLogger(__name__)

__all__ = ["OnnxModel", "check_feed"]


class OnnxModel:
    """An ONNX model file on onnxruntime's CPU provider.

    Args:
        path: The ``model.onnx`` file (external data beside it).
        config: Its Triton config; inputs/outputs left empty are filled from the file.
        labels_in: Where the config's ``label_filename`` files are (default: the model's
            folder, beside ``config.pbtxt``).
        threads: onnxruntime's intra-op threads (0: one per core); the config's
            ``intra_op_thread_count`` parameter overrides it. A server with several
            worker processes gives each ``cores // workers``.
    """

    def __init__(
        self,
        path: Path,
        config: cfg.ModelConfig,
        labels_in: Path | None = None,
        *,
        threads: int = 0,
    ) -> None:
        import onnxruntime as ort

        _check_external_data(path)
        options = ort.SessionOptions()
        for key, value in cfg.session_entries(config).items():
            options.add_session_config_entry(key, value)
        asked = config.parameters.get("intra_op_thread_count")
        if asked is not None and asked.string_value:  # the config's choice comes first
            threads = int(asked.string_value)
        options.intra_op_num_threads = threads
        self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        # where it came from, read once (every overview poll shows it)
        self.origin = describe(self._session.get_modelmeta().custom_metadata_map)
        self.instances = sum(group.count for group in config.instance_group) or 1
        self.output_names = [o.name for o in self._session.get_outputs()]
        if not config.input:
            config.CopyFrom(_complete(config, self._session))
        _check_names(config, self._session)
        self.config = _with_tritons_defaults(config, path.name)
        self.inputs, self.outputs = cfg.signature(config)
        # Triton's reshape: the wire carries `dims`, the model sees `reshape.shape`.
        self._to_model = {t.name: tuple(t.reshape.shape) for t in config.input
                          if t.HasField("reshape")}  # fmt: skip
        self._to_wire = {t.name: tuple(t.dims) for t in config.output if t.HasField("reshape")}
        self._batched = config.max_batch_size > 0
        folder = labels_in or path.parent.parent  # label files live beside config.pbtxt
        self.labels = {t.name: read_labels(folder, t.label_filename)
                       for t in config.output if t.label_filename}  # fmt: skip

    def run(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """All outputs for one (already checked) feed."""
        ready = {name: self._model_view(name, array) for name, array in feed.items()}
        values = self._session.run(self.output_names, ready)
        return {name: self._reshaped(value, self._to_wire.get(name))
                for name, value in zip(self.output_names, values, strict=True)}  # fmt: skip

    def _model_view(self, name: str, array: np.ndarray) -> np.ndarray:
        array = _text(array) if array.dtype.kind == "O" else array
        return self._reshaped(array, self._to_model.get(name))

    def _reshaped(self, array: np.ndarray, shape: tuple[int, ...] | None) -> np.ndarray:
        if shape is None:
            return array
        lead = array.shape[:1] if self._batched else ()
        return array.reshape((*lead, *shape))


def _text(array: np.ndarray) -> np.ndarray:
    """BYTES arrive as bytes; onnxruntime's string tensors compare as str (a category
    b"north" would not match "north")."""
    flat = [v.decode("utf-8", "replace") if isinstance(v, bytes) else v for v in array.ravel()]
    return np.array(flat, dtype=object).reshape(array.shape)


def _complete(config: cfg.ModelConfig, session: Any) -> cfg.ModelConfig:
    """Fill a config's signature from the model, as Triton's auto-complete does."""
    from ..types import BY_ORT

    def specs(values: Sequence[Any]) -> list[TensorSpec]:
        return [
            TensorSpec(v.name, BY_ORT[v.type].numpy if v.type in BY_ORT else "unknown",
                       tuple(d if isinstance(d, int) else (d or None) for d in v.shape))
            for v in values
        ]  # fmt: skip

    done = cfg.build_config(
        config.name, specs(session.get_inputs()), specs(session.get_outputs()),
        max_batch_size=config.max_batch_size or None,
    )  # fmt: skip
    done.MergeFrom(config)
    return done


def _with_tritons_defaults(config: cfg.ModelConfig, filename: str) -> cfg.ModelConfig:
    """What Triton's auto-complete adds to a loaded config, so clients read the same:
    the platform, the version policy, instance group names and the model file's name."""
    if not config.platform and not config.backend:
        config.platform = "onnxruntime_onnx"
    if not config.HasField("version_policy"):
        config.version_policy.latest.num_versions = 1
    if not config.instance_group:
        config.instance_group.add(count=1, kind=cfg.KIND_CPU)
    for i, group in enumerate(config.instance_group):
        group.name = group.name or f"{config.name}_{i}"
    config.default_model_filename = config.default_model_filename or filename
    return config


def _check_names(config: cfg.ModelConfig, session: Any) -> None:
    """The config's inputs must be the model file's (a request would fail on every run)."""
    declared = sorted(t.name for t in config.input)
    actual = sorted(i.name for i in session.get_inputs())
    if declared != actual:
        raise ArtifactError(
            f"the model file takes inputs {actual} but its config declares {declared}"
        )


def _check_external_data(path: Path) -> None:
    """Refuse external-data references that leave the model's folder (or go through links)."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as err:
        raise ArtifactError(f"{path.name} is not a readable ONNX model: {err}") from err
    folder = path.parent.resolve()
    for location in _onnxio.data_files(model):
        target = path.parent / location
        if target.is_symlink() or not target.resolve().is_relative_to(folder):
            raise ArtifactError(
                f"external data '{location}' of {path.name} must be a plain file in the "
                "model's folder"
            )


def check_feed(
    inputs: Sequence[TensorSpec],
    feed: Mapping[str, np.ndarray],
    max_batch_size: int,
    model: str = "model",
) -> int:
    """Check a request's inputs against the signature; return its batch size (0: none).

    Messages start as Triton's do (clients and tests match on them), then say what the
    model takes.

    Raises:
        ProtocolError: naming the input at fault and what it should be.
    """
    known = {spec.name: spec for spec in inputs}
    unknown = sorted(set(feed) - set(known))
    if unknown:
        raise ProtocolError(f"unexpected inference input '{unknown[0]}' for model '{model}'; "
                            f"the model takes {sorted(known)}")  # fmt: skip
    missing = sorted(set(known) - set(feed))
    if missing:
        raise ProtocolError(
            f"expected {len(known)} inputs but got {len(feed)} inputs for model '{model}'; "
            f"missing input(s) {missing}"
        )
    batch = 0
    for name, array in feed.items():
        _check_one(known[name], array, max_batch_size, model)
        if max_batch_size > 0:
            if batch and array.shape[0] != batch:
                raise ProtocolError(
                    f"input '{name}' has batch size {array.shape[0]}, other inputs {batch}"
                )
            batch = int(array.shape[0])
    return batch


def _check_one(spec: TensorSpec, array: np.ndarray, max_batch_size: int, model: str) -> None:
    expected = V2_TO_NUMPY.get(cfg.v2_datatype(spec.dtype)) if spec.dtype != "unknown" else None
    if expected is not None and array.dtype != expected:
        got = cfg.v2_datatype(array.dtype.name if array.dtype.kind != "O" else "object")
        raise ProtocolError(
            f"inference input '{spec.name}' data-type is '{got}', but model '{model}' expects "
            f"'{cfg.v2_datatype(spec.dtype)}'"
        )
    shape_ok = len(array.shape) == spec.rank and all(
        not isinstance(want, int) or want == got
        for want, got in zip(spec.shape, array.shape, strict=True)
    )
    if not shape_ok:
        want = ",".join("-1" if not isinstance(d, int) else str(d) for d in spec.shape)
        got_shape = ",".join(str(d) for d in array.shape)
        raise ProtocolError(
            f"unexpected shape for input '{spec.name}' for model '{model}'. Expected "
            f"[{want}], got [{got_shape}]; the model expects {spec.shape_text}"
            + (" (the first dimension is the batch)" if max_batch_size > 0 else "")
        )
    if max_batch_size > 0 and not 1 <= array.shape[0] <= max_batch_size:
        raise ProtocolError(
            f"inference request batch-size must be <= {max_batch_size} for '{model}': input "
            f"'{spec.name}' has batch size {array.shape[0]}; send at most {max_batch_size} "
            "per request"
        )

"""An ONNX ``ModelProto`` or ``.onnx`` file: checked, then passed through unchanged."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import onnx

from .. import _onnxio
from .._feed import as_feed
from ..artifact import Artifact, load
from ..errors import ExportError
from ..provenance import Lineage
from ._options import ExportOptions
from ._parity import grow_batch
from .report import ExportReport


def export(model: Any, example: Any, options: ExportOptions) -> Artifact:
    """Check an ONNX model and wrap it; see :func:`nbdeploy.export`.

    There is no source to compare with, so ``parity`` stays ``None``; an ``example``
    is run (at two batch sizes when ``dynamic_batch``) to prove the model accepts it.
    """
    if isinstance(model, str | os.PathLike):
        art = _from_file(Path(model), options.name)
    else:
        proto = onnx.ModelProto()
        proto.CopyFrom(model)  # the user's proto stays theirs, untouched
        lineage = Lineage("onnx", onnx.__version__, "onnx.ModelProto")
        art = Artifact.from_onnx(
            proto, name=options.name, lineage=lineage.then("export", exporter="passthrough")
        )
        _check(art.onnx, art.onnx_path)
    feed = None
    if example is not None:
        feed = as_feed(example, art.inputs)
        art.run(feed)
        if options.dynamic_batch and all(s.has_dynamic_batch for s in art.inputs):
            art.run(grow_batch(feed))
    report = ExportReport.of(art.lineage, art.parity)
    return dataclasses.replace(art, example=feed, report=report)


def _from_file(path: Path, name: str) -> Artifact:
    art = load(path)
    _check(art.onnx, art.onnx_path)
    lineage = art.lineage
    if not any(s.kind == "export" for s in lineage.steps):
        lineage = lineage.then("export", exporter="passthrough", file=path.name)
    return dataclasses.replace(art, name=name, lineage=lineage)


def _check(model: onnx.ModelProto, path: Path | None) -> None:
    try:
        _onnxio.check(model, path)
    except Exception as err:
        raise ExportError(f"the ONNX model is not valid: {err}") from err

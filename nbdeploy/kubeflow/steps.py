"""What each component of :func:`nbdeploy.kubeflow.pipeline` does, as plain functions
over files: the component bodies are one call each, and the same calls run in a notebook
or a test. Models travel between steps as saved artifacts (``<folder>/model.onnx``, with
their lineage and parity in the file), data as a ``.npy`` array of input rows.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from .._feed import as_feed
from ..artifact import Artifact, load
from ..errors import ConfigError, ParityError
from ..provenance import Parity, compare_outputs
from .sources import kind_of

__all__ = [
    "check_parity",
    "export_model",
    "load_artifact",
    "load_rows",
    "optimize_model",
    "quantize_model",
    "record_parity",
    "save_artifact",
]

log = logging.getLogger(__name__)
PARITY_ROWS = 64  # rows of the data the parity check runs: enough to catch a drift, quick


def load_rows(path: str | Path) -> np.ndarray:
    """The input rows a training step saved with ``numpy.save`` (no pickles).

    Raises:
        ConfigError: The file is missing, not a ``.npy`` array, or has no rows.
    """
    try:
        rows = np.asarray(np.load(Path(path), allow_pickle=False))
    except (OSError, ValueError) as err:
        raise ConfigError(
            f"cannot read input rows from {path}: {err}. Save a batch of model inputs with "
            "numpy.save(path, x) in the training step"
        ) from err
    if rows.ndim == 0 or len(rows) == 0:
        raise ConfigError(f"{path} holds no rows: save at least one input row")
    return rows


def save_artifact(art: Artifact, folder: str | Path) -> Path:
    """Write ``art`` into ``folder`` (a KFP artifact's path) as ``model.onnx``/``model.pt``."""
    return art.save(Path(folder) / "model")


def load_artifact(folder: str | Path) -> Artifact:
    """The artifact :func:`save_artifact` wrote into ``folder``.

    Raises:
        ConfigError: ``folder`` holds no saved model.
    """
    found = sorted(p for p in Path(folder).glob("model.*") if p.suffix in (".onnx", ".pt"))
    if not found:
        raise ConfigError(f"no model.onnx or model.pt in {folder}: was it written by a step?")
    return load(found[0])


def export_model(
    model: str | Path,
    data: str | Path,
    out: str | Path,
    *,
    name: str,
    kind: str = "auto",
    atol: float = 1e-4,
    rtol: float = 1e-3,
) -> Artifact:
    """Export the model file a training step wrote, with parity checked against it.

    Args:
        model: An ``.onnx`` file, a scikit-learn model saved with joblib or pickle, a
            TorchScript file or a ``.keras`` file (recognised by suffix, else by content;
            see ``sources.KINDS``).
        data: A ``.npy`` batch of inputs (the export's example).
        out: The folder to save the artifact into.
        name: The model's name.
        kind: ``"auto"``, or a kind by name (``"onnx"``, ``"sklearn"``, ``"torchscript"``,
            ``"keras"``).
        atol: Absolute tolerance of the export's parity check.
        rtol: Relative tolerance of the export's parity check.

    Raises:
        ParityError: The export answers differently from the model file.
    """
    import nbdeploy as nbd

    source = kind_of(model, kind)
    example = load_rows(data)[:PARITY_ROWS]
    art = nbd.export(source.load(Path(model)), example, name=name, atol=atol, rtol=rtol,
                     progress=False)  # fmt: skip
    save_artifact(art, out)
    log.info("exported %s (%s): %s", name, source.name, art.parity)
    return art


def optimize_model(src: str | Path, out: str | Path) -> Artifact:
    """:func:`nbdeploy.optimize` with its default passes, from folder to folder."""
    import nbdeploy as nbd

    art = nbd.optimize(load_artifact(src), progress=False)
    save_artifact(art, out)
    return art


def quantize_model(src: str | Path, data: str | Path, out: str | Path, *, scheme: str) -> Artifact:
    """:func:`nbdeploy.quantize` with ``scheme``; the rows of ``data`` calibrate static schemes."""
    import nbdeploy as nbd

    calibration = load_rows(data)
    art = nbd.quantize(load_artifact(src), scheme, calibration=calibration, progress=False)
    save_artifact(art, out)
    return art


def check_parity(
    source: str | Path,
    candidate: str | Path,
    previous: str | Path,
    data: str | Path,
    *,
    kind: str = "auto",
    atol: float = 1e-4,
    rtol: float = 1e-3,
) -> Parity:
    """Compare the candidate's answers with the source model's (where it can run here),
    else with the previous step's, on the first rows of ``data``.

    Args:
        source: The model file the training step wrote.
        candidate: The folder of the artifact about to be deployed.
        previous: The folder of the step before it (the reference when the source's kind
            cannot run here).
        data: A ``.npy`` batch of inputs.
        kind: As in :func:`export_model`.
        atol: Absolute tolerance (loosen it for quantized candidates).
        rtol: Relative tolerance.

    Raises:
        ParityError: An output differs beyond tolerance; the message names it and what to do.
    """
    art = load_artifact(candidate)
    rows = load_rows(data)[:PARITY_ROWS]
    feed = as_feed(rows, art.inputs)
    source_kind = kind_of(source, kind)
    if source_kind.reference is not None:
        model = source_kind.load(Path(source))
        reference, against = source_kind.reference(model, rows, art.outputs), str(source)
    else:
        reference, against = load_artifact(previous).run, f"the previous step ({previous})"
    checks = compare_outputs(art.run(feed), reference(feed), batch_size=len(rows),
                             atol=atol, rtol=rtol)  # fmt: skip
    parity = Parity(against, atol, rtol, tuple(checks))
    worst = parity.worst()
    if worst is not None and not worst.ok:
        raise ParityError(
            f"'{art.name}' ({_steps(art)}) differs from {against} on output '{worst.output}': "
            f"max abs error {worst.max_abs:.3g}, max rel {worst.max_rel:.3g} (atol {atol:g}, "
            f"rtol {rtol:g}). Deploying stopped. If the difference is expected (quantization), "
            "loosen atol/rtol; otherwise pick a milder scheme or none.",
            output=worst.output,
            max_abs=worst.max_abs,
            max_rel=worst.max_rel,
            batch_size=worst.batch_size,
        )
    log.info("parity of %s: %s", art.name, parity)
    return parity


def record_parity(parity: Parity, metrics: Any) -> None:
    """Log the worst errors on a KFP ``Metrics`` artifact, shown beside the run."""
    worst = parity.worst()
    metrics.log_metric("parity_max_abs", worst.max_abs if worst else 0.0)
    metrics.log_metric("parity_max_rel", worst.max_rel if worst else 0.0)


def _steps(art: Artifact) -> str:
    return " → ".join(step.kind for step in art.lineage.steps) or "as exported"

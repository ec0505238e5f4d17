"""``nbd.compare`` run by another Python: one whose onnxruntime has a provider this one's
lacks (``onnxruntime-openvino`` lives in a virtualenv of its own,
:mod:`nbdeploy.bench.openvino_venv`).

The artifacts cross as files (:meth:`~nbdeploy.artifact.Artifact.save`, then
:func:`~nbdeploy.artifact.load` there, lineage and session config included), the data as
``.npy`` files; the rows come back as JSON and make a :class:`~nbdeploy.bench.results.Comparison`
here whose :meth:`~nbdeploy.bench.results.Comparison.artifact` answers with this side's
artifacts. That Python imports this nbdeploy (its folder alone is put on its path), so
both sides run the same code, and needs only nbdeploy's runtime dependencies.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..artifact import Artifact, load
from ..errors import ConfigError, VirtualenvError
from .compare import compare
from .results import Comparison
from .rows import ComparisonRow
from .scoring import split_data

__all__ = ["compare_in"]

_REQUEST, _ROWS = "request.json", "rows.json"


def compare_in(
    python: str | os.PathLike[str],
    variants: Sequence[Artifact],
    *,
    data: tuple[Any, Any] | Any = None,
    metric: str = "accuracy",
    providers: Sequence[str] = ("cpu",),
    batch_sizes: Sequence[int] = (1,),
    warmup: int = 3,
    repeat: int = 5,
    stable_within: float = 0.05,
    max_runs: int = 10,
    timeout: float = 1800.0,
) -> Comparison:
    """:func:`nbdeploy.compare` of ``variants``, run by the interpreter ``python``.

    Args:
        python: An interpreter with nbdeploy's runtime dependencies and the onnxruntime
            build to measure, e.g. :func:`nbdeploy.bench.openvino_venv.prepare`'s.
        variants: Artifacts only (a source model cannot cross to another process).
        metric: A metric's name (a function cannot cross either).
        timeout: Seconds the whole comparison may take there.
        data, providers, batch_sizes, warmup, repeat, stable_within, max_runs: As for
            :func:`nbdeploy.compare`.

    Returns:
        A :class:`~nbdeploy.bench.results.Comparison` of the rows measured there.

    Raises:
        ConfigError: A variant is not an artifact, or ``metric`` is not a name.
        VirtualenvError: The other Python failed; the message carries its output.
    """
    if not variants or not all(isinstance(v, Artifact) for v in variants):
        raise ConfigError("compare_in takes artifacts only: save or export the model first.")
    if not isinstance(metric, str):
        raise ConfigError("compare_in takes a metric's name: a function cannot cross over.")
    options = {"metric": metric, "providers": list(providers), "batch_sizes": list(batch_sizes),
               "warmup": warmup, "repeat": repeat, "stable_within": stable_within,
               "max_runs": max_runs}  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="nbdeploy-elsewhere-") as work:
        folder = Path(work)
        files = [v.save(folder / f"variant-{i:02d}.onnx").name for i, v in enumerate(variants)]
        inputs: list[str] | None = None
        if data is not None:
            x, y = split_data(data, variants[0])
            inputs = list(x)
            for i, name in enumerate(inputs):
                np.save(folder / f"x{i}.npy", x[name], allow_pickle=False)
            if y is not None:
                np.save(folder / "y.npy", y, allow_pickle=False)
        request = {"files": files, "inputs": inputs, "options": options}
        (folder / _REQUEST).write_text(json.dumps(request))
        _run(Path(python), folder, timeout)
        done = json.loads((folder / _ROWS).read_text())
    rows = [ComparisonRow(**row) for row in done["rows"]]
    return Comparison(rows, done["metric"], done["higher_is_better"], partial=done["partial"],
                      variants={v.variant: v for v in variants})  # fmt: skip


def _run(python: Path, folder: Path, timeout: float) -> None:
    """Run :func:`_measure_here` on ``folder`` with ``python``, this nbdeploy alone on its
    path (``-I``: no PYTHONPATH, user site or current folder), through a link to this
    package so that the folder holding it (site-packages, maybe) stays out."""
    package = Path(__file__).resolve().parents[1]
    (folder / "path").mkdir()
    (folder / "path" / package.name).symlink_to(package, target_is_directory=True)
    code = (f"import sys; sys.path.insert(0, {str(folder / 'path')!r}); "
            "from nbdeploy.bench.elsewhere import _measure_here; "
            f"_measure_here({str(folder)!r})")  # fmt: skip
    try:
        done = subprocess.run([str(python), "-I", "-c", code], capture_output=True, text=True,
                              timeout=timeout, check=False)  # fmt: skip
    except subprocess.TimeoutExpired as err:
        raise VirtualenvError(f"the comparison in {python} took more than {timeout:.0f}s") from err
    if done.returncode:
        raise VirtualenvError(f"the comparison in {python} failed:\n{done.stderr[-3000:]}")


def _measure_here(work: str) -> None:
    """The other side: load the artifacts and data, compare, write the rows."""
    folder = Path(work)
    request = json.loads((folder / _REQUEST).read_text())
    variants = [load(folder / name) for name in request["files"]]
    data: Any = None
    if request["inputs"] is not None:
        data = {name: np.load(folder / f"x{i}.npy") for i, name in enumerate(request["inputs"])}
        if (folder / "y.npy").exists():
            data = (data, np.load(folder / "y.npy"))
    cmp = compare(variants, data=data, progress=False, **request["options"])
    rows = [dataclasses.asdict(row) for row in cmp.rows]
    (folder / _ROWS).write_text(json.dumps({
        "metric": cmp.metric, "higher_is_better": cmp.higher_is_better,
        "partial": cmp.partial, "rows": rows,
    }))  # fmt: skip

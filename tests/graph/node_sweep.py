"""Sweep the ``onnx`` package's backend node test cases through ``nbd.optimize``.

Each case is a tiny model with inputs and expected outputs. A case counts when
onnxruntime runs the original and matches its expected outputs; for those, the optimized
model must run, keep its graph inputs, and give the same outputs as the original.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort

import nbdeploy as nbd


@dataclass
class SweepResult:
    """Counts and the names of cases that went wrong."""

    total: int = 0
    skipped: int = 0
    checked: int = 0
    changed: list[str] = field(default_factory=list)
    crashed: list[str] = field(default_factory=list)
    lost_inputs: list[str] = field(default_factory=list)


def _cases() -> Iterator[Any]:
    from onnx.backend.test.case.node import collect_testcases

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield from collect_testcases(None)


def _run(model: onnx.ModelProto, inputs: list[Any]) -> list[Any] | None:
    try:
        session = ort.InferenceSession(
            model.SerializeToString(), providers=["CPUExecutionProvider"]
        )
        names = [i.name for i in session.get_inputs()]
        if len(names) != len(inputs):
            return None
        return list(session.run(None, dict(zip(names, inputs, strict=True))))
    except Exception:
        return None


def _same(a: Any, b: Any, rtol: float, atol: float) -> bool:
    if isinstance(a, list | tuple):
        return (
            isinstance(b, list | tuple)
            and len(a) == len(b)
            and all(_same(x, y, rtol, atol) for x, y in zip(a, b, strict=True))
        )
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if a.dtype.kind in "fc":
        return bool(np.allclose(a, b, rtol=rtol, atol=atol, equal_nan=True))
    return bool(np.array_equal(a, b))


def sweep() -> SweepResult:
    """Run the sweep; see the module docstring."""
    result = SweepResult()
    for case in _cases():
        result.total += 1
        if case.model is None or not case.data_sets:
            result.skipped += 1
            continue
        inputs, expected = case.data_sets[0]
        original = _run(case.model, list(inputs))
        if original is None or not _same(original, list(expected), case.rtol, case.atol):
            result.skipped += 1  # onnxruntime cannot run it (or disagrees): not our sweep
            continue
        result.checked += 1
        try:
            art = nbd.export(case.model, name="case")
            optimized = nbd.optimize(art, check=False).onnx
        except Exception as err:  # the sweep records crashes instead of stopping
            result.crashed.append(f"{case.name}: {type(err).__name__}: {err}"[:300])
            continue
        if [i.name for i in optimized.graph.input] != [i.name for i in case.model.graph.input]:
            result.lost_inputs.append(case.name)
        got = _run(optimized, list(inputs))
        if got is None:
            result.crashed.append(f"{case.name}: optimized model does not run")
        elif not _same(got, original, 1e-5, 1e-6):
            result.changed.append(case.name)
    return result


if __name__ == "__main__":
    import time

    started = time.perf_counter()
    outcome = sweep()
    print(
        f"{outcome.total} cases, {outcome.checked} checked, {outcome.skipped} skipped, "
        f"{time.perf_counter() - started:.0f}s"
    )
    for kind in ("changed", "crashed", "lost_inputs"):
        items = getattr(outcome, kind)
        print(kind, len(items))
        for item in items:
            print("   ", item)

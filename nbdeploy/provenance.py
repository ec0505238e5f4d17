"""Where an artifact came from and how far it can be trusted: lineage and parity."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from .types import Output

__all__ = ["Lineage", "OutputParity", "Parity", "Step"]


@dataclass(frozen=True)
class Step:
    """One transformation applied to a model (an export, a pass pipeline, a quantization).

    Attributes:
        kind: What happened: ``"export"``, ``"optimize"``, ``"quantize"``, ...
        detail: Settings and facts about it, JSON-ready (e.g. the exporter used and why).
    """

    kind: str
    detail: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Lineage:
    """The source of an artifact and every step since.

    Attributes:
        framework: Source framework: ``"torch"``, ``"sklearn"`` or ``"onnx"``.
        framework_version: Its version at export time.
        model_class: The source model's class, e.g. ``"torch.nn.Sequential"``.
        steps: Transformations in the order they were applied.
    """

    framework: str
    framework_version: str
    model_class: str
    steps: tuple[Step, ...] = ()

    def then(self, kind: str, **detail: Any) -> Lineage:
        """A new lineage with one more step."""
        return Lineage(
            self.framework,
            self.framework_version,
            self.model_class,
            (*self.steps, Step(kind, detail)),
        )

    def to_json(self) -> str:
        """Serialize, for an ONNX file's metadata."""
        return json.dumps(asdict(self), default=str)

    @classmethod
    def from_json(cls, text: str) -> Lineage:
        """The inverse of :meth:`to_json`."""
        data = json.loads(text)
        steps = tuple(Step(s["kind"], s.get("detail", {})) for s in data.get("steps", ()))
        return cls(data["framework"], data["framework_version"], data["model_class"], steps)

    def __str__(self) -> str:
        chain = " → ".join([self.framework, *(s.kind for s in self.steps)])
        return f"{self.model_class} ({self.framework} {self.framework_version}): {chain}"


@dataclass(frozen=True)
class OutputParity:
    """How one output of a derived model compares with the reference, at one batch size."""

    output: str
    batch_size: int
    max_abs: float
    max_rel: float
    ok: bool


@dataclass(frozen=True)
class Parity:
    """Errors of a model against a reference on the same inputs.

    ``ok`` means every element satisfied ``|got - want| <= atol + rtol * |want|``
    (``np.allclose``); integer and string outputs must match exactly.

    Attributes:
        reference: What the answers were compared with, e.g. ``"torch"``.
        atol: Absolute tolerance used.
        rtol: Relative tolerance used.
        checks: One entry per output and batch size.
    """

    reference: str
    atol: float
    rtol: float
    checks: tuple[OutputParity, ...]

    @property
    def ok(self) -> bool:
        """Every output within tolerance at every batch size."""
        return all(check.ok for check in self.checks)

    @property
    def max_abs(self) -> float:
        """Largest absolute error over all outputs and batch sizes."""
        return max((c.max_abs for c in self.checks), default=0.0)

    @property
    def max_rel(self) -> float:
        """Largest relative error over all outputs and batch sizes."""
        return max((c.max_rel for c in self.checks), default=0.0)

    @property
    def batch_sizes(self) -> tuple[int, ...]:
        """Batch sizes the comparison ran at."""
        return tuple(sorted({c.batch_size for c in self.checks}))

    def worst(self) -> OutputParity | None:
        """The check with the largest excess over its tolerance (a failing one first)."""
        return max(self.checks, key=lambda c: (not c.ok, c.max_abs), default=None)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self) | {"ok": self.ok, "max_abs": self.max_abs, "max_rel": self.max_rel}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Parity:
        """The inverse of :meth:`to_dict`."""
        checks = tuple(OutputParity(**c) for c in data["checks"])
        return cls(data["reference"], data["atol"], data["rtol"], checks)

    def __str__(self) -> str:
        verdict = "ok" if self.ok else "MISMATCH"
        sizes = ", ".join(map(str, self.batch_sizes))
        return (
            f"{verdict} vs {self.reference}: max abs {self.max_abs:.3g}, "
            f"max rel {self.max_rel:.3g} "
            f"(atol {self.atol:g}, rtol {self.rtol:g}; batch sizes {sizes})"
        )


def compare_outputs(
    got: Mapping[str, Output],
    want: Mapping[str, Output],
    *,
    batch_size: int,
    atol: float,
    rtol: float,
) -> list[OutputParity]:
    """Compare two output dicts name by name (``want`` is the reference).

    Sequences and maps must have the same structure (lengths, keys); the values in them
    are compared like tensors, and the output's errors are the largest among them.
    """
    return [
        _compare_output(name, got[name], value, batch_size, atol, rtol)
        for name, value in want.items()
    ]


def _compare_output(
    name: str, got: Output, want: Output, batch: int, atol: float, rtol: float
) -> OutputParity:
    pairs = _leaf_pairs(got, want)
    if pairs is None:
        return OutputParity(name, batch, float("inf"), float("inf"), ok=False)
    parts = [_compare_one(name, np.asarray(g), np.asarray(w), batch, atol, rtol) for g, w in pairs]
    return OutputParity(
        name,
        batch,
        max((p.max_abs for p in parts), default=0.0),
        max((p.max_rel for p in parts), default=0.0),
        all(p.ok for p in parts),
    )


def _leaf_pairs(got: Any, want: Any) -> list[tuple[Any, Any]] | None:
    """Matching (got, want) values inside two outputs, or None when their sequences and
    maps differ in length or keys. A tensor output is its own one leaf."""
    if isinstance(want, dict):
        if not isinstance(got, dict) or got.keys() != want.keys():
            return None
        return _joined([_leaf_pairs(got[key], want[key]) for key in want])
    if isinstance(want, list):
        if not isinstance(got, list) or len(got) != len(want):
            return None
        return _joined([_leaf_pairs(g, w) for g, w in zip(got, want, strict=True)])
    return None if isinstance(got, list | dict) else [(got, want)]


def _joined(parts: list[list[tuple[Any, Any]] | None]) -> list[tuple[Any, Any]] | None:
    if any(part is None for part in parts):
        return None
    return [pair for part in parts if part is not None for pair in part]


def _compare_one(
    name: str, got: np.ndarray, want: np.ndarray, batch: int, atol: float, rtol: float
) -> OutputParity:
    if got.shape != want.shape:
        return OutputParity(name, batch, float("inf"), float("inf"), ok=False)
    if want.dtype.kind not in "biufc" or got.dtype.kind not in "biufc":
        same = bool(np.array_equal(got, want))  # strings, objects: exact or nothing
        return OutputParity(name, batch, 0.0 if same else float("inf"), 0.0 if same else 1.0, same)
    g, w = got.astype(np.float64), want.astype(np.float64)
    both_nan = np.isnan(g) & np.isnan(w)
    err = np.where(both_nan, 0.0, np.abs(g - w))
    max_abs = float(np.nan_to_num(err, nan=np.inf).max(initial=0.0))
    rel = err / np.maximum(np.abs(w), np.finfo(np.float32).tiny)
    max_rel = float(np.nan_to_num(rel, nan=np.inf).max(initial=0.0))
    exact = want.dtype.kind in "biu"  # labels and indices must match exactly
    ok = (
        max_abs == 0.0
        if exact
        else bool(np.isclose(g, w, atol=atol, rtol=rtol, equal_nan=True).all())
    )
    return OutputParity(name, batch, max_abs, max_rel, ok)

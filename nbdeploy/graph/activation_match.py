"""How a variant's tensors are matched with a reference's, and how far each drifts."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import numpy as np

from .activation_report import TensorDrift

# Per reference tensor: its node's name, operator, depth and inputs.
Nodes = dict[str, tuple[str, str, int, list[str]]]
# Names onnxruntime's QDQ quantizer gives the copies of an activation X around its
# QuantizeLinear -> DequantizeLinear pair (quant_utils' suffixes).
QDQ_SUFFIXES = ("_DequantizeLinear_Output", "_QuantizeLinear_Input", "_DequantizeLinear_Output_1")


def names(tensor: str) -> list[str]:
    return [tensor, *(tensor + suffix for suffix in QDQ_SUFFIXES)]


def qdq_matching(
    got: Mapping[str, np.ndarray], want: Mapping[str, np.ndarray]
) -> dict[str, dict[str, Any]]:
    """onnxruntime's pre-/post-QDQ pairing of a QDQ model's activations, with the float
    model's beside them; empty for models without QDQ pairs."""
    if not any(name.endswith(QDQ_SUFFIXES) for name in got):
        return {}
    from onnxruntime.quantization.qdq_loss_debug import create_activation_matching

    as_lists = {name: [value] for name, value in got.items()}
    return dict(create_activation_matching(as_lists, {k: [v] for k, v in want.items()}))


def pair(
    tensor: str, got: Mapping[str, np.ndarray], matched: Mapping[str, Mapping[str, Any]]
) -> tuple[str, np.ndarray, str, np.ndarray | None] | None:
    """(variant name, value, how matched, pre-QDQ value) for ``tensor``, if any."""
    qdq = matched.get(tensor)
    if qdq is not None and "float" in qdq:
        post = next(tensor + s for s in ("", *QDQ_SUFFIXES) if tensor + s in got
                    and got[tensor + s] is qdq["post_qdq"][0])  # fmt: skip
        return post, qdq["post_qdq"][0], "qdq", qdq["pre_qdq"][0]
    if tensor in got:
        return tensor, got[tensor], "name", None
    return None


def why_unmatched(
    tensor: str,
    found: tuple[str, np.ndarray, str, Any] | None,
    want: np.ndarray,
    types: Mapping[str, str],
) -> str:
    if found is None and tensor in types:
        return f"a {types[tensor]} in the variant, not float"
    if found is None:
        return "not in the variant (fused, renamed or rewritten)"
    if found[1].shape != want.shape:
        return f"shape {want.shape} in the reference, {found[1].shape} in the variant"
    if want.dtype.kind != "f":
        return "not a float tensor in the reference"
    return ""


def drift(
    tensor: str, node: str, op: str, depth: int, want: np.ndarray,
    name: str, value: np.ndarray, how: str, pre: np.ndarray | None,
) -> TensorDrift:  # fmt: skip
    w, g = want.astype(np.float64), value.astype(np.float64)
    max_abs = float(np.abs(g - w).max(initial=0.0))
    identical = bool(np.allclose(g, w, rtol=1e-4, atol=1e-5, equal_nan=True))
    qdq = sqnr_db(value, pre) if pre is not None else None
    return TensorDrift(tensor, node, op, depth, name, how, sqnr_db(want, value), max_abs,
                       math.inf, identical, qdq)  # fmt: skip


def sqnr_db(reference: np.ndarray, other: np.ndarray) -> float:
    """``20·log10(‖reference‖ / ‖reference − other‖)`` in float64: ``inf`` when equal,
    ``-inf`` when the reference is all zeros and the other is not."""
    r = reference.astype(np.float64).ravel()
    noise = float(np.linalg.norm(r - other.astype(np.float64).ravel()))
    signal = float(np.linalg.norm(r))
    if noise == 0.0:
        return math.inf
    return 20 * math.log10(signal / noise) if signal > 0 else -math.inf


def own(drifts: list[TensorDrift], nodes: Nodes) -> list[TensorDrift]:
    """Each drift with ``own_db``: the noise power its node adds over its noisiest
    matched input, relative to the signal (inputs and weights count as exact)."""
    by_name = {d.tensor: d for d in drifts}
    out = []
    for d in drifts:
        inputs = [by_name[i].sqnr_db for i in nodes[d.tensor][3] if i in by_name]
        added = _nsr(d.sqnr_db) - max((_nsr(s) for s in inputs), default=0.0)
        own = math.inf if added <= 0 or d.identical else -10 * math.log10(added)
        out.append(replace(d, own_db=own))
    return out


def _nsr(sqnr: float) -> float:
    """Noise-to-signal power ratio of an SQNR in dB."""
    return 0.0 if sqnr == math.inf else 10 ** (-sqnr / 10)

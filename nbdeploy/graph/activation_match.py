"""How a variant's tensors are matched with a reference's, and how far each drifts."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, NamedTuple

import numpy as np

from .activation_report import TensorDrift

# Per reference tensor: its node's name, operator, depth and inputs.
Nodes = dict[str, tuple[str, str, int, list[str]]]
# Names onnxruntime's QDQ quantizer gives the copies of an activation X around its
# QuantizeLinear -> DequantizeLinear pair (quant_utils' suffixes).
QDQ_SUFFIXES = ("_DequantizeLinear_Output", "_QuantizeLinear_Input", "_DequantizeLinear_Output_1")


class Found(NamedTuple):
    """A reference tensor's counterpart in the variant."""

    name: str  # the variant tensor compared
    value: np.ndarray
    how: str  # "name" or "qdq"
    pre: np.ndarray | None  # for "qdq", the value before its quantize -> dequantize
    made_as: str  # the variant tensor its node writes (pre-QDQ for "qdq")


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
) -> Found | None:
    """The counterpart of ``tensor`` among the variant's values, if any."""
    qdq = matched.get(tensor)
    if qdq is not None and "float" in qdq:
        post, pre = qdq["post_qdq"][0], qdq["pre_qdq"][0]
        by_value = {id(value): name for name, value in got.items()}
        return Found(by_value[id(post)], post, "qdq", pre, by_value[id(pre)])
    if tensor in got:
        return Found(tensor, got[tensor], "name", None, tensor)
    return None


def fused_into(nodes: Nodes, tensor: str, variant_op: str | None) -> str | None:
    """The reference node the variant merged into ``tensor``'s maker, when the variant
    makes it with another operator (onnxruntime's QDQ quantizer folds a Relu or Clip into
    the MatMul or Conv before it, which then writes the Relu's output name)."""
    name, op, _, inputs = nodes[tensor]
    if variant_op is None or variant_op == op:
        return None
    for _ in range(3):  # up through the few single-input ops a quantizer folds
        if not inputs or inputs[0] not in nodes:
            return None
        name, op, _, inputs = nodes[inputs[0]]
        if op == variant_op:
            return name
    return None


def why_unmatched(
    tensor: str,
    found: Found | None,
    want: np.ndarray,
    types: Mapping[str, str],
) -> str:
    if found is None and tensor in types:
        return f"a {types[tensor]} in the variant, not float"
    if found is None:
        return "not in the variant (fused, renamed or rewritten)"
    if found.value.shape != want.shape:
        return f"shape {want.shape} in the reference, {found.value.shape} in the variant"
    if want.dtype.kind != "f":
        return "not a float tensor in the reference"
    return ""


def drift(
    tensor: str, nodes: Nodes, want: np.ndarray, found: Found, fused: str | None
) -> TensorDrift:
    """How far ``found`` is from ``want``. A QDQ step's own SQNR only where the variant's
    node is the reference's (after a fold, the pre-QDQ value is another tensor)."""
    node, op, depth, _ = nodes[tensor]
    w, g = want.astype(np.float64), found.value.astype(np.float64)
    max_abs = float(np.abs(g - w).max(initial=0.0))
    identical = bool(np.allclose(g, w, rtol=1e-4, atol=1e-5, equal_nan=True))
    step = sqnr_db(found.value, found.pre) if found.pre is not None and not fused else None
    return TensorDrift(tensor, node, op, depth, found.name, found.how, sqnr_db(want, found.value),
                       max_abs, math.inf, identical, step, fused,
                       channel_sqnr_db(want, found.value))  # fmt: skip


def channel_sqnr_db(reference: np.ndarray, other: np.ndarray) -> float:
    """The lowest SQNR of one channel (a slice along axis 1, or along the last axis,
    whichever is lower), each channel's signal taken as at least the median channel's:
    low when one scale for the whole tensor rounds typical channels away (an outlier
    channel sets it), not when a nearly silent channel (a sparse ReLU output) carries a
    little noise. Below rank 2, the whole tensor's SQNR."""
    if reference.ndim < 2:
        return sqnr_db(reference, other)
    r, o = reference.astype(np.float64), other.astype(np.float64)
    lowest = math.inf
    for axis in {1, r.ndim - 1}:
        others = tuple(a for a in range(r.ndim) if a != axis)
        signal = np.sqrt(np.square(r).sum(axis=others))
        noise = np.sqrt(np.square(r - o).sum(axis=others))
        floor = max(float(np.median(signal)), float(np.finfo(np.float64).eps))
        noisy = noise > 0
        if noisy.any():
            ratio = np.maximum(signal[noisy], floor) / noise[noisy]
            lowest = min(lowest, float(20 * np.log10(ratio).min()))
    return lowest


def sqnr_db(reference: np.ndarray, other: np.ndarray) -> float:
    """``20·log10(‖reference‖ / ‖reference − other‖)`` in float64; ``inf`` when equal.
    A zero reference counts as machine epsilon, as onnxruntime's ``qdq_loss_debug`` has
    it, so its SQNR is very low but finite."""
    r = reference.astype(np.float64).ravel()
    noise = float(np.linalg.norm(r - other.astype(np.float64).ravel()))
    if noise == 0.0:
        return math.inf
    signal = max(float(np.linalg.norm(r)), float(np.finfo(np.float64).eps))
    return 20 * math.log10(signal / noise)


def own(drifts: list[TensorDrift], nodes: Nodes) -> list[TensorDrift]:
    """Each drift with ``own_db``: the noise power its node adds over its noisiest
    matched input, relative to the signal (inputs and weights count as exact; through
    an unmatched input, the matched ones it was made from)."""
    by_name = {d.tensor: d.sqnr_db for d in drifts}
    by_channel = {d.tensor: d.channel_sqnr_db for d in drifts}
    out = []
    for d in drifts:
        made_from = nodes[d.tensor][3]
        own = _added(d.sqnr_db, _input_sqnrs(made_from, by_name, nodes, hops=3), d.identical)
        inputs = _input_sqnrs(made_from, by_channel, nodes, hops=3)
        channel = _added(d.channel_sqnr_db, inputs, d.identical)
        out.append(replace(d, own_db=own, own_channel_db=channel))
    return out


def _added(sqnr: float, inputs: list[float], identical: bool) -> float:
    """The SQNR of the noise a node adds over its noisiest input; ``inf`` when it adds
    none, or when that input is already lost in noise (SQNR below 3 dB), where what the
    node adds cannot be told from what it passes on."""
    noisiest = max((_nsr(s) for s in inputs), default=0.0)
    added = _nsr(sqnr) - noisiest
    lost = noisiest > _LOST
    return math.inf if added <= 0 or identical or lost else -10 * math.log10(added)


_LOST = 10 ** (-3 / 10)  # the noise-to-signal ratio of an SQNR of 3 dB


def _input_sqnrs(
    inputs: list[str], by_name: Mapping[str, float], nodes: Nodes, hops: int
) -> list[float]:
    found = []
    for name in inputs:
        if name in by_name:
            found.append(by_name[name])
        elif name in nodes and hops > 0:  # unmatched (folded away): look behind it
            found += _input_sqnrs(nodes[name][3], by_name, nodes, hops - 1)
    return found


def _nsr(sqnr: float) -> float:
    """Noise-to-signal power ratio of an SQNR in dB."""
    return 0.0 if sqnr == math.inf else 10 ** (-sqnr / 10)

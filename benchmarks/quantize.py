"""Quantization: every scheme on the digits CNN and a small transformer, on this CPU.

Accuracy drop (points) and p50 latency / size ratios against fp32, one run, through
``nbd.compare``. The transformer is untrained (no bundled text data): its column is
top-1 agreement with fp32, not accuracy. A second comparison runs every variant on the CPU
and OpenVINO execution providers in onnxruntime-openvino's own virtualenv
(:mod:`nbdeploy.bench.openvino_venv`, built on first use), with where each provider put the
nodes. Run: ``python -m benchmarks.quantize``.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnx

import nbdeploy as nbd
from benchmarks._report import write
from nbdeploy.bench import elsewhere, openvino_venv
from nbdeploy.bench.rows import ComparisonRow

SCHEMES = ["int8-dynamic", "int8-static", "fp16", "int8-weight-symmetric",
           "int8-weight-asymmetric", "int4-weight-symmetric", "int4-weight-symmetric-b32",
           "kmeans-16", "kmeans-4"]  # fmt: skip
# The packed schemes whose remaining bytes are broken down in a second table.
PACKED = ("int4-weight-symmetric", "int4-weight-symmetric-b32", "kmeans-16", "kmeans-4")
_INTEGER = {onnx.TensorProto.INT2, onnx.TensorProto.UINT2, onnx.TensorProto.INT4,
            onnx.TensorProto.UINT4, onnx.TensorProto.INT8, onnx.TensorProto.UINT8}  # fmt: skip
_SIDE = ("_scale", "_zero_point", "_kmeans_codebook", "_shape")


def _digits() -> tuple[nbd.Artifact, Any, Any, Any]:
    from nbdeploy import examples

    data = examples.digits()
    images = examples.Digits.images
    art = nbd.optimize(
        nbd.export(examples.train_digits_cnn(data), images(data.x_val[:8]), name="digits-cnn")
    )
    return art, images(data.x_train[:256]), images(data.x_val), data.y_val


def _transformer() -> tuple[nbd.Artifact, Any, Any, None]:
    import torch

    from tests import zoo

    rng = np.random.default_rng(0)
    ids = rng.integers(0, 100, (256, 16))
    feed = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
    model = zoo.seeded(zoo.TinyTransformer(width=64))
    example = {k: torch.from_numpy(v[:4]) for k, v in feed.items()}
    art = nbd.optimize(nbd.export(model, example, name="tiny-transformer"))
    return art, {k: v[:128] for k, v in feed.items()}, {k: v[128:] for k, v in feed.items()}, None


def _where_bytes_go(art: nbd.Artifact, scheme: str) -> dict[str, Any]:
    """The serialized model's bytes by kind: packed/integer weights, their scales and
    codebooks, float tensors left as they were (biases, small weights), and the graph."""
    kinds = {"integer weights kB": 0, "scales, zero points, codebooks kB": 0,
             "float tensors kept kB": 0}  # fmt: skip
    for tensor in art.onnx.graph.initializer:
        if tensor.name.endswith(_SIDE):
            kind = "scales, zero points, codebooks kB"
        elif tensor.data_type in _INTEGER:
            kind = "integer weights kB"
        else:
            kind = "float tensors kept kB"
        kinds[kind] += tensor.ByteSize()
    graph = art.onnx.ByteSize() - sum(kinds.values())
    return {"model": art.name, "scheme": scheme,
            **{k: round(v / 1e3, 2) for k, v in kinds.items()},
            "graph and metadata kB": round(graph / 1e3, 2)}  # fmt: skip


def _on_openvino(
    variants: list[nbd.Artifact], data: Any, *, labelled: bool, repeat: int = 7
) -> list[dict[str, Any]]:
    """Every variant on onnxruntime-openvino's CPU and OpenVINO providers (one onnxruntime,
    so the CPU column is the baseline the OpenVINO one is measured against), with where
    OpenVINO put the nodes; a variant it cannot run says why."""
    reason = openvino_venv.unavailable_reason()
    if reason is not None:
        return [
            {"model": variants[0].name, "scheme": "all"}
            | dict.fromkeys(_OPENVINO_COLUMNS, "–")
            | {"skipped": reason}
        ]
    cmp = elsewhere.compare_in(openvino_venv.prepare(), variants, data=data,
                               providers=["cpu", "openvino"], repeat=repeat)  # fmt: skip
    by_key = {(r.variant, r.provider): r for r in cmp.rows}
    rows = []
    for scheme, variant in zip(["fp32", *SCHEMES], variants, strict=True):
        cpu, openvino = by_key[variant.variant, "cpu"], by_key[variant.variant, "openvino"]
        rows.append(_openvino_row(variant.name, scheme, cpu, openvino, labelled=labelled))
        print(rows[-1], flush=True)
    return rows


_OPENVINO_COLUMNS = (
    "quality % (CPU EP)", "quality % (OpenVINO)", "CPU EP p50 µs", "OpenVINO p50 µs",
    "OpenVINO / CPU",
    "nodes on CPU EP", "nodes on OpenVINO", "skipped",
)  # fmt: skip


def _openvino_row(
    name: str, scheme: str, cpu: ComparisonRow, openvino: ComparisonRow, *, labelled: bool
) -> dict[str, Any]:
    """One line of the OpenVINO table: every column, "–" where a provider did not run."""
    row: dict[str, Any] = {"model": name, "scheme": scheme} | dict.fromkeys(_OPENVINO_COLUMNS, "–")
    for label, measured in (("CPU EP", cpu), ("OpenVINO", openvino)):
        if measured.p50_ms is not None:
            quality = measured.metric if labelled else measured.top1_agreement
            row |= {
                f"quality % ({label})": None if quality is None else round(quality, 2),
                f"{label} p50 µs": round(measured.p50_ms * 1e3, 1),
                f"nodes on {label}": measured.placement,
            }  # fmt: skip
    if cpu.p50_ms is not None and openvino.p50_ms is not None:
        row["OpenVINO / CPU"] = round(openvino.p50_ms / cpu.p50_ms, 2)
    return row | {"skipped": openvino.skipped or cpu.skipped or ""}


def _budget() -> list[dict[str, Any]]:
    """``max_drop`` on the digits CNN with a 1000x outlier channel after its second block
    (``examples.train_digits_cnn(outlier=...)``): plain int8 against the budget met."""
    from nbdeploy import examples

    data = examples.digits()
    images = examples.Digits.images
    model = examples.train_digits_cnn(data, outlier=1000.0)
    art = nbd.optimize(nbd.export(model, images(data.x_val[:8]), name="digits-cnn-outlier"))
    validation = (images(data.x_val), data.y_val)
    rows = []
    for scheme, max_drop in BUDGETS:
        q = nbd.quantize(art, scheme, calibration=images(data.x_train[:256]),
                         max_drop=max_drop, data=validation)  # fmt: skip
        assert q.report is not None and q.report.budget is not None
        budget = q.report.budget
        chosen, first = budget.steps[budget.chosen], budget.steps[0]
        lat = budget.latency_ms
        rows.append({
            "scheme": scheme, "max drop": max_drop,
            "fp32 accuracy %": round(budget.reference_metric, 2),
            "all quantized: drop": round(first.drop, 2),
            "all quantized: size ratio": round(first.size_bytes / budget.reference_size, 3),
            "budget: drop": round(chosen.drop, 2), "met": budget.met,
            "attempts": len(budget.steps), "kept float": ", ".join(chosen.kept_float) or "–",
            "size ratio": round(chosen.size_bytes / budget.reference_size, 3),
            "latency ratio": round(lat["chosen"] / lat["unquantized"], 2),
        })  # fmt: skip
        print(rows[-1], flush=True)
    return rows


BUDGETS = [("int8-static", 0.5), ("int8-static", 2.0), ("int8-weight-symmetric", 0.5),
           ("int4-weight-symmetric", 1.0)]  # fmt: skip
BUDGET_NOTES = (
    "nbd.quantize(art, scheme, max_drop=..., data=(x_val, y_val)) on the digits CNN with "
    "one channel of its second block scaled 1000x (and the next convolution's weights on "
    "it scaled down: the same function in float), as large language models' activations "
    "have. 'all quantized' is the first attempt; 'kept float' the nodes the search put "
    "back, ranked by the activation report (the worst channel's SQNR shows the outlier "
    "that the tensor's SQNR hides) and grouped with the nodes that read their tensor. "
    "Size ratio and latency ratio (p50 at batch 1, CPU, from the report) are against fp32. "
    "An outlier in an activation costs int8-static the two convolutions around it; in "
    "weight-only schemes only the weights that read it."
)


def main() -> Path:
    """Run and write the results."""
    rows, breakdown, openvino = [], [], []
    for art, calibration, x, y in (_digits(), _transformer()):
        variants = [art] + [nbd.quantize(art, s, calibration=calibration) for s in SCHEMES]
        breakdown += [_where_bytes_go(v, s) for v, s in zip(variants[1:], SCHEMES, strict=True)
                      if s in PACKED]  # fmt: skip
        data = (x, y) if y is not None else x
        openvino += _on_openvino(variants, data, labelled=y is not None)
        cmp = nbd.compare(variants, data=data, progress=False, repeat=7)
        base = cmp.measured[0]
        for scheme, row in zip(["fp32", *SCHEMES], cmp.measured, strict=True):
            quality = row["accuracy"] if y is not None else row.get("top1_agreement")
            reference = base["accuracy"] if y is not None else 100.0
            rows.append({
                "model": art.name, "scheme": scheme,
                "accuracy %" if y is not None else "agreement %": round(quality, 2),
                "drop (points)": round(reference - quality, 2),
                "p50 µs": round(row["p50_ms"] * 1e3, 1),
                "latency ratio": round(row["p50_ms"] / base["p50_ms"], 2),
                "size kB": round(row["size_bytes"] / 1e3, 1),
                "size ratio": round(row["size_bytes"] / base["size_bytes"], 3),
            })  # fmt: skip
            print(rows[-1], flush=True)
    for row in rows:  # one table: name the quality column the same way
        row["quality %"] = row.pop("accuracy %", None) or row.pop("agreement %", None)
    notes = (
        "Batch 1, onnxruntime CPU, p50 of 7 auto-ranged runs. quality: accuracy on the "
        "digits validation set (450 images) for the CNN; top-1 agreement with fp32 for the "
        "untrained transformer. int4 weights (per channel, and -b32: one scale per 32 "
        "inputs of an output channel) and k-means indices for k <= 16 are stored packed, "
        "two values a byte, as ONNX INT4/UINT4 (opset 21); kmeans-4 four a byte as UINT2 "
        "(opset 25); the second table says where the remaining bytes are. Findings: "
        "int8-dynamic turns Conv into ConvInteger, which onnxruntime's CPU runs ~5x slower "
        "than fp32 on this CNN: smaller, not faster. Weight-only schemes run at fp32 speed "
        "only because the artifact carries session.disable_quant_qdq=1: onnxruntime then "
        "folds every dequantizing node into float weights at load (the optimized graphs of "
        "int4, -b32 and kmeans-16 have the same ops as fp32's, checked), so their p50 "
        "differences here are run-to-run noise on a shared 2-core machine. Without it, "
        "onnxruntime re-dequantizes int8 every call (2.5x slower, measured) and turns "
        "int4 MatMuls into MatMulNBits."
    )
    where = (
        "Serialized bytes of each packed model by kind: the packed integer weights or "
        "indices, their float scales/zero points/codebooks (and blocked convolutions' "
        "target shapes), the float tensors left as they were (biases, norms, weights under "
        "64 values), and the graph with its names and metadata. -b32 pays one float32 "
        "scale per 32 values (1 bit a value) for its lower error; on these small models "
        "the graph and kept floats are a fixed ~3 kB (CNN) and ~14 kB (transformer)."
    )
    section = ("Where the bytes of the packed models go", where, breakdown)
    budget = ("An accuracy budget on a model with an outlier channel", BUDGET_NOTES, _budget())
    on_openvino = ("On OpenVINO (onnxruntime-openvino)", OPENVINO_NOTES, openvino)
    return write("quantize", "Quantization: accuracy, latency and size vs fp32", rows, notes,
                 sections=[section, budget, on_openvino])  # fmt: skip


OPENVINO_NOTES = (
    "Every variant above on onnxruntime-openvino 1.24.1's two providers, in its own "
    "virtualenv (nbdeploy.bench.openvino_venv): the CPU execution provider of that same "
    "onnxruntime as the baseline, and the OpenVINO execution provider (its CPU device), "
    "batch 1, p50 of 7 auto-ranged runs. Nodes: onnxruntime's record of its partitioning "
    "(session.record_ep_graph_assignment_info), nodes of the graph after its basic "
    "optimizations; 'in 1 subgraph' means OpenVINO compiled all of its share as one "
    "network, which the profiler shows as a single node. Weight-only schemes count fewer "
    "nodes than their files hold because their DequantizeLinear nodes fold into float "
    "weights at load (session.disable_quant_qdq). onnxruntime 1.24's CPU provider has no "
    "fp16 kernels: its record lists only the Casts, and the rest, run in float32 after "
    "inserted casts, is counted from OpenVINO's record of the same variant ('placed after "
    "partitioning'). Findings: OpenVINO took every node of every variant it could load, "
    "compiled as one subgraph. onnxruntime-openvino 1.24.1 cannot load the CNN's "
    "int8-dynamic variant (ConvInteger after DynamicQuantizeLinear: 'the graph is not "
    "acyclic' when it partitions); the transformer's it runs, 3-7x slower than the CPU "
    "provider across our runs. For most other variants the OpenVINO provider is slower than "
    "the CPU provider at batch 1 on models this small: its fixed cost per call is about the "
    "CNN's whole run. fp16 can go the other way: onnxruntime 1.24's CPU provider has no fp16 "
    "kernels and runs float32 ones behind casts. Latencies come from a shared 2-core "
    "machine; ratios within one table are the figure to read."
)


if __name__ == "__main__":
    logging.disable(logging.WARNING)
    warnings.simplefilter("ignore")
    print(main().read_text())

"""4-bit MatMulNBits (int4-matmul) against fp32 and int8-dynamic on transformers, this CPU.

Two models: the small transformer of ``benchmarks.quantize`` and a randomly initialised
BERT-base-sized model (transformers' ``BertConfig``: hidden 768, 12 layers, 12 heads,
intermediate 3072; nothing downloaded) exported by ``nbd.export`` at sequence length 128.
Rows: size and size ratio, p50 at batch 1 (onnxruntime CPU, ``nbd.compare``), latency
ratio, top-1 agreement and max abs difference against fp32; then BERT's p50 at sequence
lengths 1 to 128. The issue's goal: BERT-base int4-matmul at most 0.2x fp32's size, and
no slower at batch 1.
Run: ``python -m benchmarks.quantize_transformers``.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np

import nbdeploy as nbd
from benchmarks._report import write


def ort_version() -> str:
    import onnxruntime

    return str(onnxruntime.__version__)


SCHEMES = ["int8-dynamic", "int4-dynamic", "int4-matmul", "int4-matmul-acc4", "int4-matmul-b128",
           "int4-matmul-b128-acc4", "int4-weight-symmetric-b32"]  # fmt: skip
SEQUENCE = 128
SWEEP = (1, 8, 32, 128)  # sequence lengths BERT's latency is measured at


def _tiny() -> tuple[nbd.Artifact, Any]:
    from benchmarks.quantize import _transformer

    art, _, x, _ = _transformer()
    return art, {k: v[:32] for k, v in x.items()}


def _bert() -> tuple[nbd.Artifact, Any]:
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    # use_cache=False: BertConfig says True (for its decoder mode), and nbdeploy's
    # exporter then takes this encoder for a decoder with a key/value cache.
    config = BertConfig(hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                        intermediate_size=3072, use_cache=False)  # fmt: skip
    model = BertModel(config).eval()
    rng = np.random.default_rng(0)
    ids = rng.integers(0, config.vocab_size, (8, SEQUENCE))
    feed = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
    example = {k: torch.from_numpy(v[:2]) for k, v in feed.items()}
    return nbd.export(model, example, name="bert-base-random", progress=False), feed


def _rows(variants: list[nbd.Artifact], x: Any) -> list[dict[str, Any]]:
    art = variants[0]
    cmp = nbd.compare(variants, data=x, progress=False, repeat=5)
    base = cmp.measured[0]
    rows = []
    for scheme, variant, row in zip(["fp32", *SCHEMES], variants, cmp.measured, strict=True):
        report = variant.report
        rewritten = getattr(report, "rewritten", {})
        rows.append({
            "model": art.name, "scheme": scheme,
            "size MB": round(row["size_bytes"] / 1e6, 2),
            "size ratio": round(row["size_bytes"] / base["size_bytes"], 3),
            "p50 ms": round(row["p50_ms"], 2),
            "latency ratio": round(row["p50_ms"] / base["p50_ms"], 2),
            "memory MB": round(row["memory_mb"] or 0.0, 1),
            "agreement %": round(row.get("top1_agreement") or 0.0, 2),
            "max abs diff": row.get("max_abs_diff") or 0.0,
            "4-bit nodes": sum(rewritten.values()),
            "kept float": len(getattr(report, "kept_float", {})),
        })  # fmt: skip
        print(rows[-1], flush=True)
    return rows


def _variants(art: nbd.Artifact) -> list[nbd.Artifact]:
    return [art] + [nbd.quantize(art, s, progress=False) for s in SCHEMES]


def _by_sequence(variants: list[nbd.Artifact], feed: dict[str, Any]) -> list[dict[str, Any]]:
    """p50 at batch 1 of every variant at each sequence length of :data:`SWEEP`: short
    inputs make a MatMul a matrix-vector product, bound by reading the weights."""
    rows = []
    for length in SWEEP:
        x = {k: v[:, :length] for k, v in feed.items()}
        cmp = nbd.compare(variants, data=x, progress=False, repeat=5)
        base = cmp.measured[0]
        for scheme, row in zip(["fp32", *SCHEMES], cmp.measured, strict=True):
            rows.append({"sequence": length, "scheme": scheme,
                         "p50 ms": round(row["p50_ms"], 2),
                         "latency ratio": round(row["p50_ms"] / base["p50_ms"], 2)})  # fmt: skip
            print(rows[-1], flush=True)
    return rows


def main() -> Path:
    """Run and write the results."""
    tiny, x = _tiny()
    rows = _rows(_variants(tiny), x)
    bert, feed = _bert()
    variants = _variants(bert)
    rows += _rows(variants, feed)
    sweep = _by_sequence(variants, feed)
    bert = {r["scheme"]: r for r in rows if r["model"] == "bert-base-random"}
    verdicts = [
        f"{s}: size {r['size ratio']}x, latency {r['latency ratio']}x"
        + (" (goal met)" if r["size ratio"] <= 0.2 and r["latency ratio"] <= 1.0 else "")
        for s, r in bert.items() if s.startswith(("int4-matmul", "int4-dynamic"))
    ]  # fmt: skip
    by_length = [
        f"{s}: " + ", ".join(f"{r['latency ratio']}x at {r['sequence']}"
                             for r in sweep if r["scheme"] == s)
        for s in bert if s.startswith(("int4-matmul", "int4-dynamic"))
    ]  # fmt: skip
    notes = (
        f"Batch 1, onnxruntime {ort_version()} CPU (2 cores, nothing else running), p50 of "
        f"5+ auto-ranged runs; BERT at sequence length {SEQUENCE}, untrained (random "
        "weights), so quality is top-1 agreement with fp32 and the largest output "
        "difference. int4-matmul: onnxruntime's MatMulNBits (block 32 or 128, symmetric; "
        "acc4 = accuracy_level 4, int8 compute) for MatMul and plain Gemm weights and "
        "GatherBlockQuantized for the embedding tables; '4-bit nodes' counts rewritten "
        "nodes, 'kept float' the MatMuls left alone (attention's activation x activation "
        "products). int4-dynamic: int8-dynamic's MatMulInteger graph with its MatMul/Gemm "
        "weights stored as INT4 (one scale per output channel) behind a Cast to int8 that "
        "onnxruntime folds at load; embeddings int8. int4-weight-symmetric-b32 stores the "
        "same 4 bits a weight (INT4, "
        "one scale per 32) but onnxruntime folds them into float weights at load: fp32 "
        "speed and fp32 memory. 'memory MB' is what loading and scoring took in the "
        "process (RSS growth). Goal (BERT-base 4-bit weights <= 0.2x size, p50 <= fp32): "
        + "; ".join(verdicts)
        + ". By sequence length (second table), p50 against fp32's: "
        + "; ".join(by_length)
        + ". On this CPU (AVX2, no VNNI) accuracy_level 4 (int8 compute) is what makes "
        "MatMulNBits fast where reading the weights dominates (short inputs); at 128 tokens "
        "a MatMul is compute-bound and MatMulNBits runs at 0.9-1.2x fp32 across our runs, while "
        "int4-dynamic (int8 activations, onnxruntime's integer GEMM on the same 4-bit file) "
        "stays near half of fp32 at every length."
    )
    sweep_notes = (
        "BERT-base at batch 1 and each sequence length, every variant in one interleaved "
        "compare per length (p50 of 5+ auto-ranged runs). At short lengths a MatMul reads "
        "each weight once for a few rows, so its time is the time to read the weights: "
        "4-bit weights are read 8x faster than fp32's. At 128 tokens it is compute-bound, "
        "and onnxruntime's fp32 GEMM is hard to beat."
    )
    section = ("BERT-base latency by sequence length", sweep_notes, sweep)
    return write("quantize_transformers", "int4-matmul on transformers: size, latency, "
                 "agreement vs fp32", rows, notes, sections=[section])  # fmt: skip


if __name__ == "__main__":
    logging.disable(logging.WARNING)
    warnings.simplefilter("ignore")
    print(main().read_text())

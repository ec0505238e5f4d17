"""Every quantization scheme of the digits CNN and the tiny transformer on the CPU, CUDA
and TensorRT execution providers, at batch 1 and 32, in one ``nbd.compare`` per model.

Needs an onnxruntime with the GPU providers (``onnxruntime-gpu``; TensorRT's libraries
for the TensorRT rows): ``benchmarks/gpu.sh`` installs them and runs this. On a machine
without them the GPU rows are skipped with onnxruntime's reason, and the table says so.
Run: ``python -m benchmarks.gpu``.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import onnxruntime as ort

import nbdeploy as nbd
from benchmarks._report import write
from benchmarks.quantize import SCHEMES, _digits, _transformer
from nbdeploy.bench.rows import ComparisonRow

PROVIDERS = ("cpu", "cuda", "tensorrt")
BATCHES = (1, 32)


def _rows(art: nbd.Artifact, calibration: Any, x: Any, y: Any) -> list[dict[str, Any]]:
    """One row per variant, provider and batch size; latency against fp32's on the same
    provider and batch size."""
    variants = [art] + [nbd.quantize(art, s, calibration=calibration) for s in SCHEMES]
    data = (x, y) if y is not None else x
    cmp = nbd.compare(variants, data=data, providers=PROVIDERS, batch_sizes=BATCHES,
                      repeat=7, progress=False)  # fmt: skip
    fp32 = {(r.provider, r.batch_size): r for r in cmp.measured if r.variant == art.variant}
    scheme_of = {v.variant: s for v, s in zip(variants, ["fp32", *SCHEMES], strict=True)}
    rows = []
    for row in cmp.rows:
        reference = fp32.get((row.provider, row.batch_size))
        rows.append(_row(art.name, scheme_of[row.variant], row, reference, labelled=y is not None))
        print(rows[-1], flush=True)
    return rows


def _row(
    model: str, scheme: str, row: ComparisonRow, fp32: ComparisonRow | None, *, labelled: bool
) -> dict[str, Any]:
    out: dict[str, Any] = {"model": model, "scheme": scheme, "provider": row.provider,
                           "batch": row.batch_size}  # fmt: skip
    if row.skipped is not None:
        return out | {"quality %": "–", "p50 µs": "–", "vs fp32": "–", "nodes": "–",
                      "skipped": row.skipped[:120]}  # fmt: skip
    quality = row.metric if labelled else row.top1_agreement
    assert row.p50_ms is not None
    ratio = row.p50_ms / fp32.p50_ms if fp32 is not None and fp32.p50_ms else None
    return out | {
        "quality %": None if quality is None else round(quality, 2),
        "p50 µs": round(row.p50_ms * 1e3, 1),
        "vs fp32": None if ratio is None else round(ratio, 2),
        "nodes": row.placement or "", "skipped": "",
    }  # fmt: skip


def main() -> Path:
    """Run and write the results."""
    rows = _rows(*_digits()) + _rows(*_transformer())
    available = ", ".join(ort.get_available_providers())
    notes = (
        f"onnxruntime {ort.__version__} ({ort.get_device()}; providers here: {available}). "
        "Every scheme of benchmarks/quantize on the CPU, CUDA and TensorRT providers at batch "
        "1 and 32, p50 of 7+ auto-ranged runs; 'vs fp32' is against fp32 on the same provider "
        "and batch; 'nodes' is where onnxruntime placed them (a compiled TensorRT engine is "
        "one subgraph). quality: accuracy on the digits validation set for the CNN, top-1 "
        "agreement with fp32 for the untrained transformer. Rows a provider could not run "
        "say why."
    )
    return write("gpu", "Quantization schemes on CPU, CUDA and TensorRT", rows, notes)


if __name__ == "__main__":
    logging.disable(logging.WARNING)
    warnings.simplefilter("ignore")
    print(main().read_text())

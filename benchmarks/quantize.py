"""Quantization: every scheme on the digits CNN and a small transformer, on this CPU.

Accuracy drop (points) and p50 latency / size ratios against fp32, one run, through
``nbd.compare``. The transformer is untrained (no bundled text data): its column is
top-1 agreement with fp32, not accuracy. Run: ``python -m benchmarks.quantize``.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np

import nbdeploy as nbd
from benchmarks._report import write

SCHEMES = ["int8-dynamic", "int8-static", "fp16", "int8-weight-symmetric",
           "int8-weight-asymmetric", "kmeans-16", "int4-weight-symmetric"]  # fmt: skip


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


def main() -> Path:
    """Run and write the results."""
    rows = []
    for art, calibration, x, y in (_digits(), _transformer()):
        variants = [art] + [nbd.quantize(art, s, calibration=calibration) for s in SCHEMES]
        data = (x, y) if y is not None else x
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
        "untrained transformer. int4 is stored in 8-bit containers (same size as int8). "
        "Findings: int8-dynamic turns Conv into ConvInteger, which onnxruntime's CPU runs "
        "~5x slower than fp32 on this CNN: smaller, not faster. Weight-only schemes run at "
        "fp32 speed only because the artifact carries session.disable_quant_qdq=1 (without "
        "it onnxruntime re-dequantizes every call: 2.5x slower, measured)."
    )
    return write("quantize", "Quantization: accuracy, latency and size vs fp32", rows, notes)


if __name__ == "__main__":
    logging.disable(logging.WARNING)
    warnings.simplefilter("ignore")
    print(main().read_text())

"""Graph optimization: nodes after and onnxruntime CPU p50 latency (batch 1) for
no optimization, ``nbd.optimize``, onnxslim and onnxruntime's offline optimizer.

Run: ``python -m benchmarks.optimize`` (needs ``pip install onnxslim``).
"""

from __future__ import annotations

import logging
import tempfile
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort

import nbdeploy as nbd
from benchmarks._report import write
from nbdeploy.bench.timing import time_call


def _models() -> Iterator[tuple[str, nbd.Artifact]]:
    import torch

    from nbdeploy import examples
    from tests import zoo

    rng = np.random.default_rng(0)
    image = torch.from_numpy(rng.standard_normal((2, 1, 8, 8), dtype=np.float32))
    digits = examples.train_digits_cnn(epochs=1)
    tokens = {
        "input_ids": torch.randint(0, 100, (2, 16)),
        "attention_mask": torch.ones(2, 16, dtype=torch.int64),
    }
    cases: list[tuple[str, Any, Any]] = [
        ("conv-bn-net", zoo.seeded(zoo.ConvBnNet()), image),
        ("digits-cnn", digits, image),
        ("token-gru", zoo.seeded(zoo.TokenGru()), torch.randint(0, 50, (2, 12))),
        ("two-heads", zoo.seeded(zoo.TwoHeads()), (torch.randn(2, 6), torch.randint(0, 10, (2,)))),
        ("tiny-transformer", zoo.seeded(zoo.TinyTransformer()), tokens),
    ]
    for name, model, example in cases:
        yield f"{name} (traced)", nbd.export(model, example, name=name, exporter_optimize=False)
        yield f"{name} (exported)", nbd.export(model, example, name=name)


def _slim(art: nbd.Artifact) -> onnx.ModelProto:
    import onnxslim

    return onnxslim.slim(art.onnx)


def _ort_offline(art: nbd.Artifact) -> onnx.ModelProto:
    with tempfile.TemporaryDirectory() as tmp:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        options.optimized_model_filepath = str(Path(tmp) / "o.onnx")
        ort.InferenceSession(art.model_bytes(), options, providers=["CPUExecutionProvider"])
        return onnx.load(options.optimized_model_filepath)


METHODS: dict[str, Callable[[nbd.Artifact], onnx.ModelProto]] = {
    "none": lambda art: art.onnx,
    "nbdeploy": lambda art: nbd.optimize(art).onnx,
    "onnxslim": _slim,
    "ort-offline": _ort_offline,
}


def _p50_us(model: onnx.ModelProto, feed: dict[str, np.ndarray]) -> float:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return time_call(lambda: session.run(None, feed), repeat=7, min_run_time=0.05).p50 * 1e6


def main() -> Path:
    """Run the benchmark and write its results."""
    rows = []
    for name, art in _models():
        assert art.example is not None
        feed = {k: v[:1] for k, v in art.example.items()}
        row: dict[str, Any] = {"model": name}
        for method, run in METHODS.items():
            model = run(art)
            row[f"nodes {method}"] = len(model.graph.node)
            row[f"p50 µs {method}"] = round(_p50_us(model, feed), 1)
        rows.append(row)
        print(row, flush=True)
    notes = (
        "'traced': torch's dynamo export with its own optimizer off (optimize=False), the "
        "graph as traced; 'exported': nbdeploy's default export. Latency: onnxruntime "
        "CPU session with default options, batch 1, p50 of 7 runs (nbdeploy.bench.timing). "
        "Known gap: on the GRU, onnxslim proves the shape of a Transpose+Reshape after the "
        "GRU node constant and removes its Shape/Slice/Concat subgraph; nbdeploy does not yet."
    )
    return write("optimize", "Graph optimization: nodes and latency", rows, notes)


if __name__ == "__main__":
    logging.disable(logging.WARNING)
    warnings.simplefilter("ignore")
    print(main().read_text())

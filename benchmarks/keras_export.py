"""Which way of turning a Keras model into ONNX works: Keras's own ``model.export(path,
format="onnx")``, tf2onnx's ``convert.from_function``, and nbdeploy's (tf2onnx on a graph
it freezes itself), over the same models, each checked by running it in onnxruntime
against the Keras model at two batch sizes.

``python -m benchmarks.keras_export`` writes ``results/keras_export.{json,md}``.
"""

from __future__ import annotations

import logging
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._report import write
from tests.tensorflow.conftest import (
    Subclassed,
    digits_cnn,
    sequence_model,
    text_model,
    two_heads,
)

Feed = list[np.ndarray]


def _models() -> dict[str, tuple[Any, Feed]]:
    rng = np.random.default_rng(0)
    images = [rng.random((4, 8, 8, 1), dtype=np.float32)]
    return {
        "Sequential CNN": (digits_cnn(), images),
        "functional, dict outputs": (two_heads(), images),
        "subclassed, tuple output": (Subclassed(), images),
        "Normalization + attention + GRU": (
            sequence_model(),
            [rng.random((3, 6, 5), dtype=np.float32)],
        ),
        "two inputs, int tokens, LSTM": (
            text_model(),
            [rng.integers(0, 50, (3, 12)).astype(np.int32), rng.random((3, 3), dtype=np.float32)],
        ),
    }


def _keras_export(model: Any, feed: Feed, folder: Path) -> bytes:
    path = folder / "keras.onnx"
    model.export(str(path), format="onnx", verbose=False)
    return path.read_bytes()


def _from_function(model: Any, feed: Feed, folder: Path) -> bytes:
    import tensorflow as tf
    import tf2onnx

    specs = [
        tf.TensorSpec((None, *x.shape[1:]), x.dtype, name=f"in{i}") for i, x in enumerate(feed)
    ]
    function = tf.function(lambda *xs: model(list(xs) if len(xs) > 1 else xs[0], training=False))
    proto, _ = tf2onnx.convert.from_function(function, input_signature=specs, opset=17)
    return bytes(proto.SerializeToString())


def _nbdeploy(model: Any, feed: Feed, folder: Path) -> bytes:
    import nbdeploy as nbd

    art = nbd.export(model, tuple(feed) if len(feed) > 1 else feed[0], progress=False)
    return art.model_bytes()


WAYS: dict[str, Callable[[Any, Feed, Path], bytes]] = {
    "keras model.export": _keras_export,
    "tf2onnx from_function": _from_function,
    "nbdeploy": _nbdeploy,
}


def _check(model_bytes: bytes, model: Any, feed: Feed) -> float:
    """Largest difference from Keras at the example's batch size and one larger (outputs
    in the order every converter writes them: dict keys sorted, sequences as they are)."""
    import onnxruntime as ort

    session = ort.InferenceSession(model_bytes)
    names = [i.name for i in session.get_inputs()]
    if len(names) != len(feed):
        raise RuntimeError(f"does not run: its graph wants {len(names)} inputs, {names}")
    worst = 0.0
    for rows in (feed, [np.concatenate([x, x[:1]]) for x in feed]):
        got = session.run(
            None, {i.name: x for i, x in zip(session.get_inputs(), rows, strict=True)}
        )
        want = model(rows if len(rows) > 1 else rows[0], training=False)
        if isinstance(want, dict):
            want = [want[k] for k in sorted(want)]
        wanted = list(want) if isinstance(want, tuple | list) else [want]
        for a, b in zip(got, wanted, strict=True):
            worst = max(worst, float(np.abs(a - np.asarray(b)).max()))
    return worst


def main() -> Path:
    rows = []
    for label, (model, feed) in _models().items():
        model(feed if len(feed) > 1 else feed[0])  # Keras's export refuses a model never called
        row: dict[str, Any] = {"model": label}
        for way, convert in WAYS.items():
            with tempfile.TemporaryDirectory() as folder:
                start = time.perf_counter()
                try:
                    data = convert(model, feed, Path(folder))
                    error = _check(data, model, feed)
                    row[way] = (
                        f"ok, max abs {error:.1e}" if error < 1e-4 else f"WRONG ({error:.1e})"
                    )
                except Exception as err:  # what each way fails with is the result
                    row[way] = f"{type(err).__name__}: {str(err).splitlines()[0][:110]}"
                row[f"{way} s"] = time.perf_counter() - start
        rows.append(row)
    notes = (
        "Each cell: the ONNX file ran in onnxruntime and matched Keras at two batch sizes "
        "(max abs error), or how the conversion failed. Every model is called once first: "
        "Keras's `model.export` refuses one that never was (nbdeploy calls it itself). "
        "Keras's export and `from_function` both leave an adapted "
        "`Normalization` layer's statistics (captured constants) as extra graph inputs, so "
        "the file does not run. nbdeploy freezes variables and captured constants itself "
        "and hands tf2onnx the frozen graph (`nbdeploy/exporters/_tensorflow.py`)."
    )
    return write("keras_export", "Keras → ONNX: which converter works", rows, notes)


if __name__ == "__main__":
    logging.disable(logging.WARNING)
    warnings.simplefilter("ignore")
    print(main().read_text())

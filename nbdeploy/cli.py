"""The ``nbdeploy`` command line: ``nbdeploy demo`` runs the end-to-end story."""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import NbDeployError

if TYPE_CHECKING:  # the examples import torch and scikit-learn; only the demo needs them
    from .artifact import Artifact
    from .bench.rows import ComparisonRow
    from .examples import Digits


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``nbdeploy`` command."""
    parser = argparse.ArgumentParser(prog="nbdeploy", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("demo", help="train, export, optimize, quantize, compare and serve")
    from .server import process

    serve = commands.add_parser(
        "serve", help="run the local KServe V2 server on a model repository (foreground)"
    )
    process.add_arguments(serve)
    args = parser.parse_args(argv)
    try:
        if args.command == "demo":
            demo()
        elif args.command == "serve":
            process.run(process.options_from(args))
    except NbDeployError as err:
        print(f"nbdeploy: {err}", file=sys.stderr)
        return 1
    return 0


def _say(step: str, detail: str = "") -> None:
    print(f"• {step}" + (f"\n    {detail}" if detail else ""), flush=True)


def demo() -> None:
    """Train on the bundled digits, export a torch CNN and a sklearn pipeline, check them."""
    import nbdeploy as nbd
    from nbdeploy import examples

    data = examples.digits()
    started = time.perf_counter()
    cnn = examples.train_digits_cnn(data)
    pipeline = examples.train_digits_pipeline(data)
    seconds = time.perf_counter() - started
    _say(f"trained a CNN and a scikit-learn pipeline on digits ({seconds:.1f}s)")

    images = examples.Digits.images(data.x_val)
    for model, example, name in (
        (cnn, images[:8], "digits-cnn"),
        (pipeline, data.x_val[:8], "digits-sklearn"),
    ):
        art = nbd.export(model, example, name=name)
        _say(f"exported {name}", repr(art))
        _say("parity", str(art.parity))
        feed = images if name == "digits-cnn" else data.x_val
        scores = np.asarray(next(iter(art.run(feed).values())))
        predicted = scores.argmax(1) if scores.ndim == 2 else scores
        _say(
            "accuracy through onnxruntime",
            f"{np.mean(predicted == data.y_val):.3f} on {len(feed)} images",
        )
        with tempfile.TemporaryDirectory() as tmp:
            path = art.save(Path(tmp) / name)
            again = nbd.load(path)
            _say(f"saved and reloaded {path.name}", f"lineage: {again.lineage}")
    best = _optimize_and_quantize(cnn, data)
    _serve_and_call(best, images)
    _say("done", "next: nbd.push to a Triton, nbd.manifests for Kubernetes as they land")


def _optimize_and_quantize(cnn: Any, data: Digits) -> Artifact:
    """The CNN as traced → optimized → every quantization scheme → compared on the CPU."""
    import nbdeploy as nbd
    from nbdeploy import examples
    from nbdeploy.quantization.schemes import CHOICES

    images = examples.Digits.images
    traced = nbd.export(cnn, images(data.x_val[:8]), name="digits-cnn", exporter_optimize=False)
    _say("graph as traced", str(nbd.inspect(traced)).splitlines()[0])
    optimized = nbd.optimize(traced)
    _say("optimized", str(optimized.report).replace("\n", "\n    "))
    schemes = [s for s in CHOICES if s != "int8-weight-asymmetric"]  # one of each kind
    variants = [optimized] + [
        nbd.quantize(optimized, s, calibration=images(data.x_train[:256])) for s in schemes
    ]
    table = nbd.compare(variants, data=(images(data.x_val), data.y_val), progress=False)
    lines = [_compared(r) for r in table.measured]
    _say("compared on this CPU (batch 1)", "\n    ".join(lines))
    choice = table.choice(metric_drop=0.5)
    _say("chosen", choice.reason if choice else "none measured")
    chosen: Artifact = table.artifact(choice.row) if choice else optimized
    return chosen


def _compared(row: ComparisonRow) -> str:
    """One measured row of the demo's table: accuracy, p50 in µs, size in kB."""
    assert row.metric is not None and row.p50_ms is not None and row.size_bytes is not None
    return (
        f"{row.variant:<34} accuracy {row.metric:5.1f}%  p50 {row.p50_ms * 1e3:6.1f} µs  "
        f"{row.size_bytes / 1e3:6.1f} kB"
    )


def _serve_and_call(art: Artifact, images: np.ndarray) -> None:
    """Serve on a local server in a temporary repository and call it like any client."""
    import nbdeploy as nbd
    from nbdeploy.targets import LocalTarget, deploy
    from nbdeploy.triton.client import inputs

    with tempfile.TemporaryDirectory() as repository:
        try:
            dep = deploy(art, LocalTarget(Path(repository)), name="digits")
            _say("serving on the local server (KServe V2, Triton-compatible)", str(dep))
            x = images[:4]
            client = dep.client()
            result = client.infer("digits", inputs(client, art.inputs, {art.inputs[0].name: x}))
            answer = result.as_numpy(art.outputs[0].name)
            local = next(iter(art.run(x).values()))
            _say(
                "called through tritonclient",
                f"version {result.get_response()['model_version']} answered; max difference "
                f"from the artifact in process: {float(np.abs(answer - local).max()):.2g}",
            )
        finally:
            nbd.server.stop(repository)


if __name__ == "__main__":
    sys.exit(main())

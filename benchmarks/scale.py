"""Real model sizes: seconds and peak memory of every step, each in a fresh process,
beside what torch and onnxruntime take for the same step done directly.

    python -m benchmarks.scale            # MLPs of 100M and 300M parameters (0.4, 1.1 GB)
    NBDEPLOY_SCALE_PARAMS=400e6 python -m benchmarks.scale

Each step runs as its own process (``python -m benchmarks.scale step NAME FOLDER``)
that reads what the step before it saved, so its peak RSS (``wait4``'s ``ru_maxrss``) is
that step's alone, loading included. Goals (issue 19): peak ≤ 3× the fp32 size, time
≤ 1.5× the direct baseline.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks import _report

SIZES = [int(float(n)) for n in os.environ.get("NBDEPLOY_SCALE_PARAMS", "100e6,300e6").split(",")]
PARAMS = SIZES[0]  # the size a step process builds (set per size by main)
WIDTH = 4096  # hidden width; depth follows from the parameter count
BATCH = 8


def _mlp() -> Any:
    import torch

    torch.manual_seed(0)
    layers = max(1, PARAMS // (WIDTH * WIDTH))
    blocks: list[torch.nn.Module] = []
    for _ in range(layers):
        blocks += [torch.nn.Linear(WIDTH, WIDTH), torch.nn.ReLU()]
    return torch.nn.Sequential(*blocks[:-1]).eval()


def _example() -> Any:
    import numpy as np

    return np.random.default_rng(0).standard_normal((BATCH, WIDTH)).astype(np.float32)


def _load(folder: Path, name: str) -> Any:
    import nbdeploy as nbd

    return nbd.load(folder / f"{name}.onnx")


# -- our steps: each reads what the one before saved -----------------------------------


def export(folder: Path) -> None:
    import torch

    import nbdeploy as nbd

    art = nbd.export(_mlp(), torch.from_numpy(_example()), name="mlp", progress=False)
    art.save(folder / "fp32.onnx")


def optimize(folder: Path) -> None:
    import nbdeploy as nbd

    nbd.optimize(_load(folder, "fp32"), progress=False).save(folder / "optimized.onnx")


def _quantize(scheme: str) -> Callable[[Path], None]:
    def step(folder: Path) -> None:
        import nbdeploy as nbd

        art = _load(folder, "optimized")
        calibration = _example() if scheme == "int8-static" else None
        out = nbd.quantize(art, scheme, calibration=calibration, progress=False)
        out.save(folder / f"{scheme}.onnx")

    return step


def compare(folder: Path) -> None:
    import nbdeploy as nbd

    variants = [_load(folder, "optimized"), _load(folder, "int8-dynamic")]
    nbd.compare(variants, data=_example(), progress=False, repeat=2, max_runs=3)


def serve(folder: Path) -> None:
    import nbdeploy as nbd

    repository = folder / "repository"
    nbd.server.start(repository, http_port=0, grpc_port=0)
    try:
        dep = nbd.serve(_load(folder, "optimized"), name="mlp", repository=repository)
        dep.try_it(_example())
    finally:
        nbd.server.stop(repository)


# -- the direct baselines --------------------------------------------------------------


def torch_export(folder: Path) -> None:
    import onnxruntime as ort
    import torch

    path = folder / "direct.onnx"
    torch.onnx.export(_mlp(), (torch.from_numpy(_example()),), str(path), dynamo=True,
                      external_data=True)  # fmt: skip
    ort.InferenceSession(str(path))


def ort_int8_dynamic(folder: Path) -> None:
    from onnxruntime.quantization import quantize_dynamic

    quantize_dynamic(folder / "direct.onnx", folder / "direct-int8.onnx",
                     use_external_data_format=True)  # fmt: skip


def ort_fp16(folder: Path) -> None:
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(folder / "direct.onnx"), keep_io_types=True)
    onnx.save(model, folder / "direct-fp16.onnx", save_as_external_data=True)


STEPS: dict[str, tuple[Callable[[Path], None], str]] = {
    "export": (export, "torch_export"),
    "optimize": (optimize, ""),
    "int8-dynamic": (_quantize("int8-dynamic"), "ort_int8_dynamic"),
    "fp16": (_quantize("fp16"), "ort_fp16"),
    "int8-static": (_quantize("int8-static"), ""),
    "kmeans-16": (_quantize("kmeans-16"), ""),
    "compare": (compare, ""),
    "serve": (serve, ""),
}
BASELINES: dict[str, Callable[[Path], None]] = {
    "torch_export": torch_export, "ort_int8_dynamic": ort_int8_dynamic, "ort_fp16": ort_fp16,
}  # fmt: skip


def _measure(name: str, folder: Path, params: int) -> tuple[float, float, str]:
    """Seconds, peak RSS (GB) and the error, if any, of one step in its own process."""
    started = time.perf_counter()
    env = {**os.environ, "NBDEPLOY_SCALE_PARAMS": str(params)}
    child = subprocess.Popen([sys.executable, "-m", "benchmarks.scale", "step", name, str(folder)],
                             stderr=subprocess.PIPE, env=env)  # fmt: skip
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - started
    error = "" if status == 0 else child.stderr.read().decode()[-300:] if child.stderr else "?"
    return seconds, usage.ru_maxrss * 1024 / 1e9, error.strip().splitlines()[-1] if error else ""


def main() -> Path:
    rows = [row for params in SIZES for row in _rows(params)]
    sizes = ", ".join(f"{p / 1e6:.0f}M ({_mlp_bytes(p) / 1e9:.2f} GB)" for p in SIZES)
    notes = (f"MLPs of {sizes} parameters (fp32), width {WIDTH}, random weights. Each "
             "step is a fresh process reading what the step before saved; peak is that "
             "process's maximum RSS, Python and libraries included (~0.5 GB before any "
             "model). 'direct' is the same step done with torch or onnxruntime alone, file "
             "to file. Exports from 1 GiB of weights are kept on disk.")  # fmt: skip
    return _report.write("scale", "Real model sizes: time and peak memory per step", rows, notes)


def _rows(params: int) -> list[dict[str, Any]]:
    size_gb = _mlp_bytes(params) / 1e9
    rows = []
    with tempfile.TemporaryDirectory(prefix="nbdeploy-scale-") as tmp:
        folder = Path(tmp)
        for step, (_, baseline) in STEPS.items():
            seconds, peak, error = _measure(step, folder, params)
            row: dict[str, Any] = {"model": f"MLP {params / 1e6:.0f}M", "step": step,
                                   "seconds": round(seconds, 1),
                                   "peak GB": round(peak, 2),
                                   "peak × model": round(peak / size_gb, 1)}  # fmt: skip
            row |= {"direct": "", "direct s": "", "direct GB": "", "time × direct": ""}
            if baseline:
                b_seconds, b_peak, b_error = _measure(baseline, folder, params)
                row |= {"direct": baseline, "direct s": round(b_seconds, 1),
                        "direct GB": round(b_peak, 2),
                        "time × direct": round(seconds / b_seconds, 2)}  # fmt: skip
                error = error or b_error
            row["error"] = error
            rows.append(row)
            print(row, flush=True)
    return rows


def _mlp_bytes(params: int) -> int:
    layers = max(1, params // (WIDTH * WIDTH))
    return layers * (WIDTH * WIDTH + WIDTH) * 4


if __name__ == "__main__":
    if sys.argv[1:2] == ["step"]:
        import logging
        import warnings

        logging.disable(logging.WARNING)
        warnings.simplefilter("ignore")
        name, where = sys.argv[2], Path(sys.argv[3])
        (STEPS[name][0] if name in STEPS else BASELINES[name])(where)
    else:
        print(main().read_text())

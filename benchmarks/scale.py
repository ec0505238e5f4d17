"""Real model sizes: seconds and peak memory of every step, each in a fresh process,
beside what torch and onnxruntime take for the same step done directly.

    python -m benchmarks.scale                      # MLPs of 100M and 300M parameters
    NBDEPLOY_SCALE_MODELS=mlp:600e6,decoder:1e9 python -m benchmarks.scale

Models are ``mlp:<params>`` (Linear+ReLU stacks, width 4096) or ``decoder:<params>`` (a
Llama-style decoder from a ``transformers`` config, TinyLlama's widths with as many
layers as the parameter count allows, random weights, ``use_cache=True`` as built).
Each step runs as its own process (``python -m benchmarks.scale step NAME FOLDER``)
that reads what the step before it saved, so its peak RSS (``wait4``'s ``ru_maxrss``) is
that step's alone, loading included. Goals (issue 19): peak ≤ 3× the fp32 size, time
≤ 1.5× the direct baseline. ``NBDEPLOY_SCALE_BEFORE=<an earlier scale.json>`` adds that
run's rows as a second table, for before/after.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks import _report

WIDTH = 4096  # MLP hidden width; depth follows from the parameter count
BATCH = 8
TOKENS = 16  # decoder example: one sequence of this many tokens
# TinyLlama-1.1B's widths; the number of layers follows from the parameter count.
DECODER: dict[str, Any] = {"vocab_size": 32000, "hidden_size": 2048, "intermediate_size": 5632,
           "num_attention_heads": 32, "num_key_value_heads": 4,
           "max_position_embeddings": 2048}  # fmt: skip


@dataclass(frozen=True)
class Subject:
    """A model of a given kind and size, built the same way in every step's process."""

    kind: str  # "mlp" or "decoder"
    params: int

    @classmethod
    def parse(cls, text: str) -> Subject:
        kind, _, params = text.partition(":")
        return cls(kind, int(float(params)))

    @property
    def spec(self) -> str:
        return f"{self.kind}:{self.params}"

    @property
    def label(self) -> str:
        if self.kind == "mlp":
            return f"MLP {self.params / 1e6:.0f}M"
        return f"decoder {self._decoder_params() / 1e9:.2f}B"

    @property
    def fp32_bytes(self) -> int:
        if self.kind == "mlp":
            return self._mlp_layers() * (WIDTH * WIDTH + WIDTH) * 4
        return self._decoder_params() * 4

    def build(self) -> Any:
        import torch

        torch.manual_seed(0)
        if self.kind == "decoder":
            import transformers

            config = transformers.LlamaConfig(**DECODER, num_hidden_layers=self._layers())
            decoder: Any = transformers.LlamaForCausalLM(config)
            return decoder.eval()
        blocks: list[torch.nn.Module] = []
        for _ in range(self._mlp_layers()):
            blocks += [torch.nn.Linear(WIDTH, WIDTH), torch.nn.ReLU()]
        return torch.nn.Sequential(*blocks[:-1]).eval()

    def example(self) -> Any:
        """The example as numpy: an array (MLP), or token ids and mask (decoder)."""
        import numpy as np

        rng = np.random.default_rng(0)
        if self.kind == "decoder":
            ids = rng.integers(0, DECODER["vocab_size"], (1, TOKENS), dtype=np.int64)
            return {"input_ids": ids, "attention_mask": np.ones_like(ids)}
        return rng.standard_normal((BATCH, WIDTH)).astype(np.float32)

    def torch_example(self) -> Any:
        import torch

        example = self.example()
        if isinstance(example, dict):
            return {k: torch.from_numpy(v) for k, v in example.items()}
        return torch.from_numpy(example)

    def _mlp_layers(self) -> int:
        return max(1, self.params // (WIDTH * WIDTH))

    def _layer_params(self) -> int:
        h, kv = DECODER["hidden_size"], DECODER["hidden_size"] * DECODER["num_key_value_heads"]
        attention = 2 * h * h + 2 * h * kv // DECODER["num_attention_heads"]
        return attention + 3 * h * DECODER["intermediate_size"] + 2 * h

    def _layers(self) -> int:
        embeddings = 2 * DECODER["vocab_size"] * DECODER["hidden_size"]  # input and head
        return max(1, (self.params - embeddings) // self._layer_params())

    def _decoder_params(self) -> int:
        embeddings = 2 * DECODER["vocab_size"] * DECODER["hidden_size"]
        return embeddings + self._layers() * self._layer_params() + DECODER["hidden_size"]


SUBJECTS = [Subject.parse(s) for s in
            os.environ.get("NBDEPLOY_SCALE_MODELS", "mlp:100e6,mlp:300e6").split(",")]  # fmt: skip
SUBJECT = SUBJECTS[0]  # the model a step process builds (set from the environment by main)


def _load(folder: Path, name: str) -> Any:
    import nbdeploy as nbd

    return nbd.load(folder / f"{name}.onnx")


# -- our steps: each reads what the one before saved -----------------------------------


def export(folder: Path) -> None:
    import nbdeploy as nbd

    art = nbd.export(SUBJECT.build(), SUBJECT.torch_example(), name="model", progress=False)
    art.save(folder / "fp32.onnx")


def optimize(folder: Path) -> None:
    import nbdeploy as nbd

    nbd.optimize(_load(folder, "fp32"), progress=False).save(folder / "optimized.onnx")


def _quantize(scheme: str) -> Callable[[Path], None]:
    def step(folder: Path) -> None:
        import nbdeploy as nbd

        art = _load(folder, "optimized")
        calibration = art.example if scheme == "int8-static" else None
        out = nbd.quantize(art, scheme, calibration=calibration, progress=False)
        out.save(folder / f"{scheme}.onnx")

    return step


def compare(folder: Path) -> None:
    import nbdeploy as nbd

    variants = [_load(folder, "optimized"), _load(folder, "int8-dynamic")]
    nbd.compare(variants, data=variants[0].example, progress=False, repeat=2, max_runs=3)


def serve(folder: Path) -> None:
    import nbdeploy as nbd

    repository = folder / "repository"
    nbd.server.start(repository, http_port=0, grpc_port=0)
    try:
        dep = nbd.serve(_load(folder, "optimized"), name="model", repository=repository)
        dep.try_it()  # the example saved with the model (a decoder's includes its cache)
    finally:
        nbd.server.stop(repository)


def push(folder: Path) -> None:
    """Push to a server with a request limit (the local server's 64 MiB) the way Triton
    users push large models: written where it reads its repository, loaded by name,
    checked through the wire."""
    import nbdeploy as nbd

    repository = folder / "shared"
    server = nbd.server.start(repository, http_port=0, grpc_port=0)
    try:
        address = server.http_url.removeprefix("http://")
        pushed = nbd.push(_load(folder, "int8-dynamic"), address, name="model",
                          repository=repository, timeout=600)  # fmt: skip
        assert pushed.parity is not None
    finally:
        nbd.server.stop(repository)


# -- the direct baselines --------------------------------------------------------------


def torch_export(folder: Path) -> None:
    import onnxruntime as ort
    import torch

    model, example = SUBJECT.build(), SUBJECT.torch_example()
    path = folder / "direct.onnx"
    if isinstance(example, dict):
        model.config.use_cache = False  # torch's exporter cannot take the cache as built
        torch.onnx.export(model, (), str(path), kwargs=example, dynamo=True, external_data=True)
    else:
        torch.onnx.export(model, (example,), str(path), dynamo=True, external_data=True)
    ort.InferenceSession(str(path))


def ort_int8_dynamic(folder: Path) -> None:
    from onnxruntime.quantization import quantize_dynamic

    quantize_dynamic(folder / "direct.onnx", folder / "direct-int8.onnx",
                     use_external_data_format=True)  # fmt: skip


def ort_fp16(folder: Path) -> None:
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    # From the path: the converter then infers shapes file to file (past 2 GiB a model in
    # memory cannot be serialized for shape inference).
    model = convert_float_to_float16(str(folder / "direct.onnx"), keep_io_types=True)
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
    "push": (push, ""),
}


def idle(folder: Path) -> None:
    """What a step process holds before any model: the interpreter and libraries."""
    import onnxruntime  # noqa: F401

    import nbdeploy  # noqa: F401


BASELINES: dict[str, Callable[[Path], None]] = {
    "torch_export": torch_export, "ort_int8_dynamic": ort_int8_dynamic, "ort_fp16": ort_fp16,
    "idle": idle,
}  # fmt: skip


def _measure(name: str, folder: Path, subject: Subject) -> tuple[float, float, str]:
    """Seconds, peak RSS (GB) and the error, if any, of one step in its own process."""
    started = time.perf_counter()
    env = {**os.environ, "NBDEPLOY_SCALE_MODELS": subject.spec}
    with tempfile.TemporaryFile() as log:
        child = subprocess.Popen([sys.executable, "-m", "benchmarks.scale", "step", name,
                                  str(folder)], stderr=log, env=env)  # fmt: skip
        _, status, usage = os.wait4(child.pid, 0)
        log.seek(0)
        lines = log.read().decode(errors="replace").strip().splitlines()
    seconds = time.perf_counter() - started
    if os.WIFSIGNALED(status):
        error = f"killed by signal {os.WTERMSIG(status)} (9: out of memory)"
    else:
        error = lines[-1] if status != 0 and lines else "failed" if status != 0 else ""
    return seconds, usage.ru_maxrss * 1024 / 1e9, error


# Why a step may pass the goals (peak ≤ 3× the model, time ≤ 1.5× direct), by step.
REASONS = {
    "export": "parity is checked: the torch model, its export and an onnxruntime session of "
    "it are alive at once, and both run at two batch sizes; a decoder is exported with its "
    "key/value cache (two more inputs and outputs per layer), torch's direct export without",
    "fp16": "the parity check holds the float32 model's session and the float16 one's, whose "
    "weights onnxruntime's CPU kernels cast back to float32 when it loads",
    "int8-static": "onnxruntime's quantize_static: a session over the model with every "
    "intermediate as an output for calibration, then the model loaded whole to quantize",
    "kmeans-16": "onnxruntime keeps every folded intermediate (int32 indices, float32 weights) "
    "until the session is built, beside the float model's session for the parity check",
    "compare": "a session per variant, and both run",
    "int8-dynamic": "a result under 256 MiB is held in memory and its session built from its "
    "bytes, beside the float model's session for the parity check",
}


def main() -> Path:
    idle = _measure("idle", Path(tempfile.gettempdir()), SUBJECTS[0])[1]
    rows = [row for subject in SUBJECTS for row in _rows(subject)]
    sizes = ", ".join(f"{s.label} ({s.fp32_bytes / 1e9:.2f} GB)" for s in SUBJECTS)
    notes = (f"{sizes} of fp32 weights, random. Each step is a fresh process reading what "
             "the step before saved; peak is that process's maximum RSS, loading included "
             f"(a process that only imports nbdeploy and onnxruntime peaks at {idle:.2f} GB). "
             "'direct' is the same step done with torch or onnxruntime alone, file to file, "
             "without nbdeploy's parity checks.")  # fmt: skip
    notes += _exceptions(rows)
    sections = []
    if before := os.environ.get("NBDEPLOY_SCALE_BEFORE"):
        earlier = json.loads(Path(before).read_text())
        sections.append((f"Before ({earlier['meta']['when']})",
                         "The same benchmark on the code before this run's change.",
                         earlier["rows"]))  # fmt: skip
    return _report.write("scale", "Real model sizes: time and peak memory per step", rows,
                         notes, sections)  # fmt: skip


def _exceptions(rows: list[dict[str, Any]]) -> str:
    """One line per row past a goal, with its number and the step's reason."""
    lines = []
    for row in rows:
        over = []
        if row["peak × model"] > 3:
            over.append(f"peak {row['peak × model']}× the model")
        if row["time × direct"] != "" and row["time × direct"] > 1.5:
            over.append(f"{row['time × direct']}× the direct time")
        if over:
            why = REASONS.get(row["step"], "")
            lines.append(f"- {row['model']} {row['step']}: {', '.join(over)}" +
                         (f" — {why}." if why else "."))  # fmt: skip
    if not lines:
        return "\n\nEvery step meets both goals."
    return "\n\nPast a goal:\n\n" + "\n".join(lines)


def _rows(subject: Subject) -> list[dict[str, Any]]:
    size_gb = subject.fp32_bytes / 1e9
    rows = []
    with tempfile.TemporaryDirectory(prefix="nbdeploy-scale-") as tmp:
        folder = Path(tmp)
        for step, (_, baseline) in STEPS.items():
            seconds, peak, error = _measure(step, folder, subject)
            row: dict[str, Any] = {"model": subject.label, "step": step,
                                   "seconds": round(seconds, 1),
                                   "peak GB": round(peak, 2),
                                   "peak × model": round(peak / size_gb, 1)}  # fmt: skip
            row |= {"direct": "", "direct s": "", "direct GB": "", "time × direct": ""}
            if baseline:
                b_seconds, b_peak, b_error = _measure(baseline, folder, subject)
                row |= {"direct": baseline, "direct s": round(b_seconds, 1),
                        "direct GB": round(b_peak, 2),
                        "time × direct": round(seconds / b_seconds, 2)}  # fmt: skip
                error = error or b_error
            row["error"] = error
            rows.append(row)
            print(row, flush=True)
    return rows


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

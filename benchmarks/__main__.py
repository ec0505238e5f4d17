"""Run every benchmark: ``python -m benchmarks``."""

from __future__ import annotations

import logging
import warnings

from benchmarks import (
    grpc_transports,
    keras_export,
    optimize,
    quantize,
    quantize_transformers,
    serve,
    soak,
)

if __name__ == "__main__":
    logging.disable(logging.WARNING)
    warnings.simplefilter("ignore")
    for bench in (keras_export, optimize, quantize, quantize_transformers, grpc_transports,
                  serve, soak):  # fmt: skip
        print(bench.main().read_text())

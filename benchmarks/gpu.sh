#!/usr/bin/env bash
# The GPU check of issue 21, as one prepared script for a machine with an NVIDIA GPU:
# installs onnxruntime-gpu (and TensorRT's pip packages with GPU_TENSORRT=1) into a venv
# of its own that sees the machine's torch, then runs benchmarks/gpu.py, which writes
# benchmarks/results/gpu.md and gpu.json.
#
#   benchmarks/gpu.sh                          # from PyPI
#   GPU_WHEELS=/path/to/wheels benchmarks/gpu.sh   # offline: onnxruntime-gpu (and TensorRT)
#                                              # wheels downloaded beforehand
#
# Without a GPU it still runs: the CUDA and TensorRT rows are then skipped with the reason
# (that is how it is tested on our CPU machines). It takes about 5 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=${GPU_VENV:-.venv-gpu}
python=${PYTHON:-python3}
"$python" -m venv --system-site-packages "$venv"   # torch, numpy, ... from the machine
pip=("$venv/bin/pip" install -q --disable-pip-version-check)
if [[ -n "${GPU_WHEELS:-}" ]]; then
    pip+=(--no-index --find-links "$GPU_WHEELS")
fi
packages=(onnxruntime-gpu)
if [[ "${GPU_TENSORRT:-0}" == 1 ]]; then
    packages+=(tensorrt-cu12)   # TensorRT's libraries, found by onnxruntime's TensorRT EP
fi
# onnxruntime-gpu is the onnxruntime module too: the venv's copy shadows the machine's.
"${pip[@]}" "${packages[@]}"
"${pip[@]}" --no-deps -e .
"$venv/bin/python" -c 'import onnxruntime as o; print("onnxruntime", o.__version__, o.get_available_providers())'
"$venv/bin/python" -m benchmarks.gpu

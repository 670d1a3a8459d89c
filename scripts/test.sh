#!/usr/bin/env bash
# The test suite, from a fresh clone: install, build the real Gemma 3 270M files for the
# integration tests (once, into ~/.cache/ggflip), then run every test. Extra flags go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
.venv/bin/ggflip prepare-demo
# Style, layering and types first: ruff (100 columns), the import-linter contracts in
# pyproject.toml, mypy.
.venv/bin/ruff check ggflip tests benchmarks
.venv/bin/lint-imports
.venv/bin/python -m mypy ggflip
GGFLIP_REAL_MODEL=1 exec .venv/bin/python -m pytest "$@"

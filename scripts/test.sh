#!/usr/bin/env bash
# The test suite, from a fresh clone: install, build the real Gemma 3 270M files for the
# integration tests (once, into ggflip's cache: $GGFLIP_CACHE_DIR, else ~/.cache/ggflip), then run
# every test. Tests read those files through links and write only under a temporary folder
# (tests/hermetic.py), never into the cache. Extra flags go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
.venv/bin/ggflip prepare-demo
# Style, layering, types and sizes first: ruff (100 columns), the import-linter contracts in
# pyproject.toml, mypy, the size check.
.venv/bin/ruff check ggflip tests benchmarks
.venv/bin/lint-imports
.venv/bin/python -m mypy ggflip
# Sizes: no module in ggflip/ over 400 lines, no function over 60 (`--list` shows the worklist).
.venv/bin/python scripts/check_size.py
# The 15 slowest tests are listed last: the suite is to stay under 12 minutes on 2 quiet cores.
GGFLIP_REAL_MODEL=1 exec .venv/bin/python -m pytest --durations=15 "$@"

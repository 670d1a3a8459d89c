#!/usr/bin/env bash
# The embedded default, from a fresh clone: install, build Gemma 3 270M F16 + quants (once, into
# ~/.cache/ggflip), then compare them on 300 MMLU questions. Extra flags go to `ggflip run`,
# e.g. `bash scripts/demo.sh --json > report.json`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh >&2
.venv/bin/ggflip prepare-demo >&2
exec .venv/bin/ggflip run --models models.toml --set gemma-270m --task mmlu --limit 300 --seed 0 --floor "$@"

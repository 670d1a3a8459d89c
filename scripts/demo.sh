#!/usr/bin/env bash
# The embedded default, from a fresh clone: install, build Gemma 3 270M F16 + quants (once, into
# ~/.cache/ggflip), then compare them on 300 MMLU questions. Extra flags go to `ggflip run`,
# e.g. `bash scripts/demo.sh --json > report.json`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh >&2
.venv/bin/ggflip prepare-demo >&2
status=0
.venv/bin/ggflip run --models models.toml --set gemma-270m --task mmlu --limit 300 --seed 0 --floor "$@" \
  || status=$?
# What the table cannot say about this particular model (stderr: stdout may be the JSON report).
cat >&2 <<'NOTE'

About these numbers: Gemma 3 270M is near chance on MMLU (~25% on four options), so accuracy
and its deltas are mostly noise; read flips, KL and same top. Every quant sits at 6.9-8.5 bits
per weight because the 262,144 x 640 token embedding (168M of the 268M weights) stays Q8_0 in all
of them. Q5_K_M looks worse than Q4_K_M only because this F16 was rebuilt from the Q4_K_M
release: re-quantizing to Q4_K_M lands back on nearly the same weights.
NOTE
exit "$status"

"""The size of each equivalence criterion: how often it says `equivalent` when the truth sits
exactly on the margin (should be at most 5 %), and how often at a truth well inside it (power).

- accuracy (Tango's score TOST, ±1 point): paired trinomial draws (lost, gained, neither) with
  p_gained - p_lost = the margin, over several n and discordance rates;
- flips (exact binomial, at most 2 %): binomial draws at the margin;
- mean KL (at most 0.01 nats): the plain normal bound against the skew-corrected one the
  criterion uses, on skewed distributions scaled to mean = margin, and on resamples of real
  per-question KLs when a report is given (`--report run.json`: each quant's rows, rescaled).

    python benchmarks/equivalence_size.py --trials 2000 [--report /tmp/run.json]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ggflip.scoring import equivalence as eq  # noqa: E402


def accuracy_rows(trials: int, rng: np.random.Generator) -> None:
    print("accuracy TOST (Tango), margin ±1 pt: share called equivalent")
    print(f"{'n':>6} {'p_lost':>7} {'at margin':>10} {'at 0':>7}")
    for n in (300, 1000, 5000, 14042):
        for p_lost in (0.0, 0.002, 0.01, 0.03):
            rates = []
            for delta in (0.01, 0.0):
                probs = [p_lost, p_lost + delta, 1 - 2 * p_lost - delta]
                counts = rng.multinomial(n, probs, trials)
                verdicts = [eq.accuracy_tost(n, int(c[0]), int(c[1]), 0.01).verdict
                            for c in counts]
                rates.append(verdicts.count(eq.EQUIVALENT) / trials)
            print(f"{n:>6} {p_lost:>7} {rates[0]:>10.3f} {rates[1]:>7.3f}")


def flip_rows(trials: int, rng: np.random.Generator) -> None:
    print("\nflips (exact binomial), margin 2 %: share called equivalent")
    print(f"{'n':>6} {'at margin':>10} {'at 1 %':>7}")
    for n in (300, 1000, 5000, 14042):
        rates = []
        for rate in (0.02, 0.01):
            flips = rng.binomial(n, rate, trials)
            rates.append(float(np.mean([eq.binomial_cdf(n, int(k), 0.02) < eq.ALPHA
                                        for k in flips])))
        print(f"{n:>6} {rates[0]:>10.3f} {rates[1]:>7.3f}")


def _sizes(samples: np.ndarray, margin: float) -> tuple[float, float]:
    """(plain normal, skew-corrected) share of rows whose upper bound is below the margin."""
    n = samples.shape[1]
    mean = samples.mean(1)
    sd = samples.std(1, ddof=1)
    se = sd / math.sqrt(n)
    skew = ((samples - mean[:, None]) ** 3).mean(1) / sd**3
    plain = float(np.mean(mean + eq.Z * se < margin))
    shift = se * skew * (2 * eq.Z**2 + 1) / (6 * math.sqrt(n))
    corrected = float(np.mean(mean + shift + eq.Z * se < margin))
    return plain, corrected


def kl_rows(trials: int, rng: np.random.Generator, report: Path | None) -> None:
    margin = 0.01
    print("\nmean KL, margin 0.01 nats, truth on the margin: share called equivalent "
          "(plain normal / skew-corrected)")
    shapes = {
        "gamma shape 2 (skew 1.4)": lambda size: rng.gamma(2.0, margin / 2.0, size),
        "exponential (skew 2)": lambda size: rng.exponential(margin, size),
        "gamma shape 0.5 (skew 2.8)": lambda size: rng.gamma(0.5, margin / 0.5, size),
        "lognormal σ 1 (skew 6.2)": lambda size: rng.lognormal(math.log(margin) - 0.5, 1.0, size),
    }
    if report is not None:
        for quant in json.loads(report.read_text())["quants"]:
            kl = np.array([row["kl"] for row in quant["rows"]], dtype=np.float64)
            scaled = kl / kl.mean() * margin
            shapes[f"real rows: {quant['label']}"] = (
                lambda size, values=scaled: rng.choice(values, size)
            )
    print(f"{'distribution':<34} {'n=100':>13} {'n=300':>13} {'n=1000':>13}")
    for name, draw in shapes.items():
        cells = []
        for n in (100, 300, 1000):
            plain, corrected = _sizes(draw((trials, n)), margin)
            cells.append(f"{plain:.3f}/{corrected:.3f}")
        print(f"{name:<34} {cells[0]:>13} {cells[1]:>13} {cells[2]:>13}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=2000)
    parser.add_argument("--report", type=Path, help="a multiple-choice report with rows")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    accuracy_rows(args.trials, rng)
    flip_rows(args.trials, rng)
    kl_rows(args.trials, rng, args.report)


if __name__ == "__main__":
    main()

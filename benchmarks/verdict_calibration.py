"""Which paired test the verdict's KL criterion uses: false-positive rate and power, measured.

Per-question KLs of a quant and of the noise floor, drawn from heavy-tailed distributions
(lognormal, a gamma mixture where 5% of hard questions carry the mean, a shared question
difficulty times each side's own noise); under the null both sides come from one distribution.
For each of four one-sided paired tests at 5% (the exact sign test the verdict uses, Wilcoxon's
signed-rank test with its tie-corrected normal approximation, a paired t-test, a sign-flip
permutation test of the mean difference, and the rule the sign test replaced: the quant's mean
above the floor's 95% interval), prints how often it calls the quant different: under
the null (should be <= 5%), with the quant's KL 1.5x the floor's on every question, and with 5%
of the questions 50x worse and the rest like the floor.

    python benchmarks/verdict_calibration.py --trials 1000
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ggflip.scoring.floor import excess_p, kl_signs  # noqa: E402
from ggflip.scoring.stats import mean_interval  # noqa: E402

Pair = tuple[np.ndarray, np.ndarray]


def sign_p(quant: np.ndarray, floor: np.ndarray) -> float:
    """The verdict's test: exact one-sided sign test on the paired KLs."""
    return excess_p(*kl_signs(quant, floor))


def wilcoxon_p(quant: np.ndarray, floor: np.ndarray) -> float:
    """Wilcoxon signed-rank, one-sided, normal approximation with the tie correction."""
    d = (quant - floor)[quant != floor]
    n = d.size
    if n == 0:
        return 1.0
    magnitude = np.abs(d)
    order = magnitude.argsort()
    ranks = np.empty(n)
    ranks[order] = np.arange(1, n + 1)
    _, inverse, counts = np.unique(magnitude, return_inverse=True, return_counts=True)
    ranks = (np.bincount(inverse, ranks) / counts)[inverse]
    variance = n * (n + 1) * (2 * n + 1) / 24 - float((counts**3 - counts).sum()) / 48
    z = (ranks[d > 0].sum() - n * (n + 1) / 4) / math.sqrt(variance)
    return 0.5 * math.erfc(z / math.sqrt(2))


def t_p(quant: np.ndarray, floor: np.ndarray) -> float:
    """Paired t-test of the mean difference, one-sided, normal approximation."""
    d = quant - floor
    sd = float(d.std(ddof=1))
    if sd == 0:
        return 1.0
    return 0.5 * math.erfc(float(d.mean()) / (sd / math.sqrt(d.size)) / math.sqrt(2))


def permutation_p(quant: np.ndarray, floor: np.ndarray, draws: int = 400) -> float:
    """Sign-flip permutation test of the mean difference, fixed seed."""
    d = quant - floor
    signs = np.random.default_rng(1).integers(0, 2, size=(draws, d.size)) * 2 - 1
    return (1 + int(((signs * d).mean(axis=1) >= d.mean()).sum())) / (draws + 1)


def null_pair(shape: str, n: int, rng: np.random.Generator) -> Pair:
    """A quant's and a floor's per-question KLs from one distribution."""
    if shape == "lognormal":
        return rng.lognormal(-8, 2, n), rng.lognormal(-8, 2, n)
    if shape == "gamma mixture":

        def draw() -> np.ndarray:
            hard = rng.random(n) < 0.05
            return np.where(hard, rng.gamma(0.5, 1e-2, n), rng.gamma(0.3, 1e-5, n))

        return draw(), draw()
    difficulty = rng.lognormal(-8, 2, n)
    return difficulty * rng.lognormal(0, 1, n), difficulty * rng.lognormal(0, 1, n)


def old_rule_p(quant: np.ndarray, floor: np.ndarray) -> float:
    """The rule the sign test replaced: 0 (different) when the quant's point mean KL is above the
    upper end of the floor's 95% interval, else 1; not a p-value, a decision."""
    return 0.0 if quant.mean() > mean_interval(floor)[1] else 1.0


TESTS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "sign (exact)": sign_p,
    "wilcoxon": wilcoxon_p,
    "paired t": t_p,
    "permutation": permutation_p,
    "old rule": old_rule_p,
}


def rates(make: Callable[[np.random.Generator], Pair], trials: int) -> list[float]:
    """Each test's rate of p < 0.05 over `trials` draws."""
    rng = np.random.default_rng(0)
    called = np.zeros(len(TESTS))
    for _ in range(trials):
        quant, floor = make(rng)
        called += [fn(quant, floor) < 0.05 for fn in TESTS.values()]
    return (called / trials).tolist()


def main() -> None:
    """Print the table: one line per case and n, one column per test."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1000)
    args = parser.parse_args()
    print(f"{'case':<32}{'n':>6}" + "".join(f"{name:>14}" for name in TESTS))
    for n in (50, 300, 3000):
        cases: dict[str, Callable[[np.random.Generator], Pair]] = {
            f"null, {shape}": lambda rng, s=shape: null_pair(s, n, rng)  # type: ignore[misc]
            for shape in ("lognormal", "gamma mixture", "shared difficulty")
        }
        cases["quant 1.5x on every question"] = lambda rng: _scaled(rng, n)
        cases["quant 50x on 5% of questions"] = lambda rng: _outliers(rng, n)
        for case, make in cases.items():
            trials = args.trials if case.startswith("null") else max(args.trials // 5, 50)
            row = rates(make, trials)
            print(f"{case:<32}{n:>6}" + "".join(f"{rate:>14.3f}" for rate in row), flush=True)


def _scaled(rng: np.random.Generator, n: int) -> Pair:
    quant, floor = null_pair("shared difficulty", n, rng)
    return 1.5 * quant, floor


def _outliers(rng: np.random.Generator, n: int) -> Pair:
    quant, floor = null_pair("shared difficulty", n, rng)
    return np.where(rng.random(n) < 0.05, 50 * quant, quant), floor


if __name__ == "__main__":
    main()

"""Equivalence against the baseline: is the quant as good as the baseline within a margin?

A difference test ("different" or not) cannot say that a quant is as good as its baseline: a
small sample never shows a difference. Equivalence turns the question round (TOST, Schuirmann
1987): the quant is `equivalent within ±m` when the whole 90 % confidence interval of its
difference lies inside the margin, that is when both one-sided tests "the difference is at or
beyond -m" and "... at or beyond +m" are rejected at α = 0.05. Each criterion gives one of three
verdicts over the units it is measured on (questions, turns, chunks):

- `equivalent`: the 90 % interval lies inside the allowed region;
- `different`: it lies wholly outside it (the difference is shown to exceed the margin);
- `undecided`: it straddles an edge; `n_more` estimates how many more units at the same observed
  rates would decide, from the test statistic's growth as √n.

The criteria (defaults and why: docs/equivalence.md):

- `accuracy_tost`: the paired accuracy difference quant - baseline = (gained - lost) / n within
  ±m, by Tango's score test for a difference of paired proportions (Tango 1998; recommended by
  Fagerland, Lydersen and Laake 2013). Its statistic uses the restricted maximum-likelihood
  discordance under each margin, so it is valid with zero discordant pairs, where a test
  conditional on the discordant pairs alone (McNemar's) says nothing about the difference's size.
- `rate_bound`: a rate of events (flips) at most m, by the exact binomial test (log-space sums,
  any n) and the Clopper-Pearson bounds.
- `mean_bound`: a mean (KL) at most m, by the normal bound of the mean over independent units,
  corrected for the skewness of per-unit KLs.

Every function is pure; the result is a `Criterion`, whose `to_dict` is the JSON form.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

ALPHA = 0.05
Z = 1.6448536269514722  # the standard normal's 95th percentile: each one-sided test at α = 0.05
LEVEL = 1 - 2 * ALPHA  # the two one-sided 95 % bounds make a 90 % interval

EQUIVALENT, DIFFERENT, UNDECIDED = "equivalent", "different", "undecided"

TANGO = "Tango score test of paired proportions (TOST, two one-sided tests at 0.05)"
EXACT_BINOMIAL = "exact binomial test, Clopper-Pearson bounds (one-sided at 0.05)"
NORMAL_MEAN = (
    "skew-corrected normal bound of the mean over independent units (Cornish-Fisher; one-sided "
    "at 0.05)"
)


@dataclass(frozen=True)
class Margins:
    """The equivalence margins: accuracy points and flips as fractions, KL in nats."""

    accuracy: float = 0.01
    flips: float = 0.02
    kl: float = 0.01


DEFAULT_MARGINS = Margins()


@dataclass(frozen=True)
class Criterion:
    """One equivalence criterion's result.

    `ci` is the 90 % interval (two one-sided 95 % bounds); `p_lower` tests "at or below the lower
    edge -m" (None for a criterion with no lower edge), `p_upper` "at or above the upper edge m",
    `p_beyond` "within the margin" (small: the difference exceeds the margin). `n_more` is the
    estimated number of further units that would decide an `undecided` verdict (None otherwise,
    or when the estimate sits on an edge, where no sample size decides).
    """

    metric: str
    margin: float
    method: str
    unit: str
    n: int
    estimate: float
    ci: tuple[float, float]
    p_lower: float | None
    p_upper: float
    p_beyond: float
    verdict: str
    n_more: int | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        """The verdict in words: "equivalent within ±1 pt", "undecided — about 900 more ..."."""
        if self.verdict == UNDECIDED:
            more = f"about {self.n_more:,} more {self.unit} would decide" if self.n_more else (
                "on the margin's edge; no sample size decides"
            )
            return f"undecided — {more}"
        return f"{self.verdict} within {margin_text(self.metric, self.margin)}"


def margin_text(metric: str, margin: float) -> str:
    """A margin as the user sets it: "±1 pt", "≤ 2%", "≤ 0.01 nats"."""
    if metric == "delta_accuracy":
        return f"±{100 * margin:g} pt"
    if metric == "flips":
        return f"≤ {100 * margin:g}%"
    return f"≤ {margin:g} nats"


def normal_sf(z: float) -> float:
    """P(Z >= z) for a standard normal Z, accurate far into the tail."""
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def _verdict(p_lower: float | None, p_upper: float, p_beyond: float) -> str:
    if p_upper < ALPHA and (p_lower is None or p_lower < ALPHA):
        return EQUIVALENT
    return DIFFERENT if p_beyond < ALPHA else UNDECIDED


def _n_more(n: int, verdict: str, statistics: Sequence[float]) -> int | None:
    """Further units at the same observed rates that would decide: each one-sided statistic
    grows as √n, so the one that must reach Z does at n·(Z / statistic)².

    `statistics` are the standardized distances of the estimate to the edges it must clear
    (positive: on the side it must reach); a zero one never reaches Z.
    """
    if verdict != UNDECIDED or n <= 0:
        return None
    if any(s == 0 or not math.isfinite(s) for s in statistics):
        return None
    needed = max(n * (Z / s) ** 2 for s in statistics)
    return max(1, math.ceil(needed - n))


# Tango's score test of a paired difference --------------------------------------------------


def tango_z(n: int, lost: int, gained: int, delta: float) -> float:
    """Tango's score statistic for H0: p_gained - p_lost = delta.

    With q the probability of a lost pair and q + delta of a gained one, the restricted MLE of q
    is the root of 2n·q² + (-(g + l) + (2n - g + l)·delta)·q - l·delta·(1 - delta) = 0, and
    Z = (g - l - n·delta) / sqrt(n·(2q + delta·(1 - delta))). Z falls as delta rises; 0 where
    the variance is 0 (no discordance under H0 and delta = 0).
    """
    a = 2.0 * n
    b = -(gained + lost) + (2.0 * n - gained + lost) * delta
    c = -lost * delta * (1.0 - delta)
    q = (-b + math.sqrt(max(b * b - 4.0 * a * c, 0.0))) / (2.0 * a)
    variance = n * (2.0 * q + delta * (1.0 - delta))
    return (gained - lost - n * delta) / math.sqrt(variance) if variance > 0 else 0.0


def _tango_bound(n: int, lost: int, gained: int, target: float) -> float:
    """The delta in [-1, 1] where Tango's Z equals `target` (it falls as delta rises)."""
    low, high = -1.0, 1.0
    for _ in range(60):
        mid = (low + high) / 2
        if tango_z(n, lost, gained, mid) > target:
            low = mid
        else:
            high = mid
    return (low + high) / 2


def accuracy_tost(
    n: int, lost: int, gained: int, margin: float, unit: str = "questions"
) -> Criterion:
    """Is the quant's accuracy within ±margin of the baseline's on the same n questions?

    Args:
        n: questions (turns) both models answered.
        lost: of them, correct under the baseline and not under the quant; `gained` the reverse.
        margin: the allowed difference as a fraction (0.01 = one accuracy point), in (0, 1).

    Raises:
        ValueError: counts or margin out of range.
    """
    if not 0 < margin < 1 or min(lost, gained) < 0 or lost + gained > n:
        raise ValueError(f"accuracy TOST: n={n}, lost={lost}, gained={gained}, margin={margin}")
    if n == 0:
        return Criterion("delta_accuracy", margin, TANGO, unit, 0, math.nan,
                         (-1.0, 1.0), 1.0, 1.0, 1.0, UNDECIDED, None)
    z_low = tango_z(n, lost, gained, -margin)  # H0 δ <= -m is rejected when large
    z_high = tango_z(n, lost, gained, margin)  # H0 δ >= m is rejected when small
    p_lower, p_upper = normal_sf(z_low), normal_sf(-z_high)
    p_beyond = min(normal_sf(z_high), normal_sf(-z_low))
    verdict = _verdict(p_lower, p_upper, p_beyond)
    estimate = (gained - lost) / n
    if -margin < estimate < margin:
        needed = [z_low, -z_high]
    else:
        needed = [z_high if estimate >= margin else -z_low]
    ci = (_tango_bound(n, lost, gained, Z), _tango_bound(n, lost, gained, -Z))
    return Criterion("delta_accuracy", margin, TANGO, unit, n, estimate, ci,
                     p_lower, p_upper, p_beyond, verdict, _n_more(n, verdict, needed))


# An exact bound on a rate --------------------------------------------------------------------


def _log_pmf(n: int, p: float) -> NDArray[np.float64]:
    """log P(X = i), i = 0..n, X ~ Binomial(n, p), 0 < p < 1, by the ratio of successive terms
    (no factorial, no overflow at any n)."""
    i = np.arange(n, dtype=np.float64)
    steps = np.log((n - i) / (i + 1)) + math.log(p) - math.log1p(-p)
    return np.concatenate(([n * math.log1p(-p)], n * math.log1p(-p) + np.cumsum(steps)))


def _logsumexp(x: NDArray[np.float64]) -> float:
    if x.size == 0:
        return -math.inf
    top = float(x.max())
    return top + math.log(float(np.exp(x - top).sum()))


def binomial_cdf(n: int, k: int, p: float) -> float:
    """P(X <= k), X ~ Binomial(n, p), summed in log space: exact to float rounding at any n."""
    if k < 0:
        return 0.0
    if k >= n or p <= 0:
        return 1.0
    if p >= 1:
        return 0.0
    return min(1.0, math.exp(_logsumexp(_log_pmf(n, p)[: k + 1])))


def binomial_sf(n: int, k: int, p: float) -> float:
    """P(X >= k), X ~ Binomial(n, p), summed in log space over its own tail."""
    if k <= 0:
        return 1.0
    if k > n or p <= 0:
        return 0.0
    if p >= 1:
        return 1.0
    return min(1.0, math.exp(_logsumexp(_log_pmf(n, p)[k:])))


def clopper_pearson(n: int, k: int, alpha: float = ALPHA) -> tuple[float, float]:
    """The exact one-sided (1 - alpha) lower and upper bounds of a binomial rate."""
    def solve(tail: Any, target: float) -> float:
        low, high = 0.0, 1.0  # tail(p) rises with p
        for _ in range(60):
            mid = (low + high) / 2
            low, high = (mid, high) if tail(mid) < target else (low, mid)
        return (low + high) / 2

    lower = 0.0 if k == 0 else solve(lambda p: binomial_sf(n, k, p), alpha)
    upper = 1.0 if k == n else solve(lambda p: 1 - binomial_cdf(n, k, p), 1 - alpha)
    return lower, upper


def rate_bound(n: int, events: int, margin: float, metric: str = "flips",
               unit: str = "questions") -> Criterion:
    """Is a rate (flips over n questions) at most `margin`? Exact binomial tests at the margin.

    `p_upper` = P(X <= events | margin) tests "the rate is at least the margin"; `p_beyond` =
    P(X >= events | margin) tests "at most the margin". `n_more` comes from the score test's
    √n growth, then is raised until the exact test decides at that rate (at most a few steps).

    Raises:
        ValueError: counts or margin out of range.
    """
    if not 0 < margin < 1 or not 0 <= events <= n:
        raise ValueError(f"rate bound: n={n}, events={events}, margin={margin}")
    if n == 0:
        return Criterion(metric, margin, EXACT_BINOMIAL, unit, 0, math.nan, (0.0, 1.0),
                         None, 1.0, 1.0, UNDECIDED, None)
    p_upper, p_beyond = binomial_cdf(n, events, margin), binomial_sf(n, events, margin)
    verdict = _verdict(None, p_upper, p_beyond)
    rate = events / n
    score = (margin - rate) / math.sqrt(margin * (1 - margin) / n)  # the score test's statistic
    n_more = _n_more(n, verdict, [abs(score)])
    if n_more is not None:
        n_more = _exact_n_more(n, rate, margin, n_more)
    return Criterion(metric, margin, EXACT_BINOMIAL, unit, n, rate, clopper_pearson(n, events),
                     None, p_upper, p_beyond, verdict, n_more)


def _exact_n_more(n: int, rate: float, margin: float, estimate: int) -> int:
    """The score test's estimate of further units, moved to where the exact test at the same
    rate first decides: 10 % steps up until it does (40 at most), then bisection."""
    def decided(total: int) -> bool:
        events = round(rate * total)
        p_upper, p_beyond = binomial_cdf(total, events, margin), binomial_sf(total, events, margin)
        return _verdict(None, p_upper, p_beyond) != UNDECIDED

    low, high = n, n + estimate
    for _ in range(40):
        if decided(high):
            break
        low, high = high, math.ceil(high * 1.1)
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (low, mid) if decided(mid) else (mid, high)
    return max(1, high - n)


# A bound on a mean ---------------------------------------------------------------------------


def mean_bound(values: NDArray[np.floating], margin: float, metric: str = "kl_mean",
               unit: str = "questions") -> Criterion:
    """Is the mean of independent per-unit values (KL) at most `margin`?

    Per-unit KLs are right-skewed (a few units carry much of the mean), where the plain
    mean ± Z·sd/√n bound is too low; the bound here is the one-term Cornish-Fisher (Edgeworth)
    correction of the studentized mean (Johnson 1978; Hall 1992): the interval mean ± Z·se is
    moved up by se·γ·(2Z² + 1)/(6√n), γ the sample skewness. Its size on real per-question KLs
    is in docs/equivalence.md. `p_upper` tests "the mean is at least the margin" and `p_beyond`
    "at most it", both against that corrected centre. A non-finite value makes the mean
    unbounded (`different`).

    Raises:
        ValueError: the margin is not positive.
    """
    if not margin > 0:
        raise ValueError(f"mean bound: margin {margin} must be positive")
    x = np.asarray(values, dtype=np.float64)
    n = int(x.size)
    if n and not np.all(np.isfinite(x)):
        return Criterion(metric, margin, NORMAL_MEAN, unit, n, math.inf, (math.inf, math.inf),
                         None, 1.0, 0.0, DIFFERENT, None)
    if n < 2:
        mean = float(x.mean()) if n else math.nan
        return Criterion(metric, margin, NORMAL_MEAN, unit, n, mean, (-math.inf, math.inf),
                         None, 1.0, 1.0, UNDECIDED, None)
    mean, sd = float(x.mean()), float(x.std(ddof=1))
    skew = float(((x - mean) ** 3).mean()) / sd**3 if sd > 0 else 0.0
    low, high = _skewed_interval(mean, sd, skew, n)
    if sd == 0:
        p_upper, p_beyond = (0.0, 1.0) if mean < margin else (1.0, 0.0 if mean > margin else 1.0)
    else:
        centre, se = (low + high) / 2, sd / math.sqrt(n)
        p_upper, p_beyond = normal_sf((margin - centre) / se), normal_sf((centre - margin) / se)
    verdict = _verdict(None, p_upper, p_beyond)
    n_more = _mean_n_more(mean, sd, skew, n, margin) if verdict == UNDECIDED else None
    return Criterion(metric, margin, NORMAL_MEAN, unit, n, mean, (low, high),
                     None, p_upper, p_beyond, verdict, n_more)


def _skewed_interval(mean: float, sd: float, skew: float, n: int) -> tuple[float, float]:
    """The 90 % interval of a mean over n units: ± Z·se, moved by the skewness correction."""
    se = sd / math.sqrt(n)
    centre = mean + se * skew * (2 * Z * Z + 1) / (6 * math.sqrt(n))
    return centre - Z * se, centre + Z * se


def _mean_n_more(mean: float, sd: float, skew: float, n: int, margin: float) -> int | None:
    """The fewest further units at which the same mean, sd and skewness decide (bisection on
    the total; None when no total up to 2^60 does)."""
    def decided(total: float) -> bool:
        low, high = _skewed_interval(mean, sd, skew, int(total))
        return high < margin or low > margin

    low, high = float(n), float(2**60)
    if not decided(high):
        return None
    while high - low > 1:
        mid = math.floor((low + high) / 2)
        low, high = (low, mid) if decided(mid) else (mid, high)
    return max(1, int(high) - n)


# Criteria together ---------------------------------------------------------------------------


def combine(criteria: Mapping[str, Criterion]) -> dict[str, Any]:
    """The `equivalence` object of a quant: `equivalent` when every criterion is, `different` when
    any is, else `undecided` with the most further units any undecided criterion needs."""
    verdicts = [c.verdict for c in criteria.values()]
    if verdicts and all(v == EQUIVALENT for v in verdicts):
        verdict = EQUIVALENT
    elif DIFFERENT in verdicts:
        verdict = DIFFERENT
    else:
        verdict = UNDECIDED
    needs = [c.n_more for c in criteria.values() if c.verdict == UNDECIDED]
    n_more = max((m for m in needs if m is not None), default=None)
    return {
        "verdict": verdict,
        "n_more": n_more if verdict == UNDECIDED and None not in needs else None,
        "criteria": {name: c.to_dict() for name, c in criteria.items()},
    }

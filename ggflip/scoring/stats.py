"""Statistics over paired results: intervals, exact tests, margin buckets, rank correlation."""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

# Baseline top-margin bucket edges: flips concentrate in the lowest buckets.
MARGIN_EDGES: tuple[float, ...] = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0)


def spearman(x: list[float], y: list[float]) -> float:
    """Spearman's rank correlation of paired values (average ranks for ties); nan below 3 pairs."""
    if len(x) < 3:
        return math.nan

    def ranks(values: list[float]) -> np.ndarray:
        array = np.asarray(values, dtype=float)
        order = array.argsort(kind="stable")
        ranked = np.empty(len(array))
        ranked[order] = np.arange(1, len(array) + 1)
        for value in np.unique(array):
            ties = array == value
            ranked[ties] = ranked[ties].mean()
        return ranked

    rx, ry = ranks(x), ranks(y)
    if rx.std() == 0 or ry.std() == 0:
        return math.nan
    return float(np.corrcoef(rx, ry)[0, 1])


def wilson_interval(successes: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """95% Wilson score interval of a proportion; (0, 1) when n is 0."""
    if n == 0:
        return (0.0, 1.0)
    phat = successes / n
    denom = 1 + z * z / n
    centre = (phat + z * z / (2 * n)) / denom
    half = z * math.sqrt(phat * (1 - phat) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def _half_tail(n: int, k: int) -> int:
    """The integer m with P(X >= k) = m / 2^n, X ~ Binomial(n, 1/2), exactly.

    The shorter of the two tails is summed (binomial coefficients are Python integers).
    """
    if n < 0:
        raise ValueError("n must be 0 or more")
    if k <= 0:
        return 1 << n
    if k > n:
        return 0
    lower = k - 1 < n - k  # sum P(X <= k - 1) and subtract when that side is shorter
    last = k - 1 if lower else n - k  # by symmetry P(X >= k) = P(X <= n - k)
    term, total = 1, 1  # C(n, 0)
    for i in range(last):
        term = term * (n - i) // (i + 1)  # C(n, i + 1), exact
        total += term
    return (1 << n) - total if lower else total


def binomial_half_tail(n: int, k: int) -> float:
    """P(X >= k) for X ~ Binomial(n, 1/2), exact at any n.

    The tail is an exact integer over 2^n and the one division at the end is correctly rounded,
    so any n works (a float 2.0**n overflows at n = 1024) and a probability below float's range
    comes out as 0.0: `binomial_half_tail_log10` gives its size then.
    """
    return _half_tail(n, k) / (1 << n)


def _log10_ratio(numerator: int, n: int) -> float:
    """log10(numerator / 2^n) of an exact integer numerator (-inf for 0), at any size."""
    return -math.inf if numerator == 0 else math.log10(numerator) - n * math.log10(2)


def binomial_half_tail_log10(n: int, k: int) -> float:
    """log10 P(X >= k), X ~ Binomial(n, 1/2): the same exact tail as `binomial_half_tail`,
    finite where that one underflows to 0.0 (2^-1326 is 10^-399.2); -inf only when k > n."""
    return _log10_ratio(_half_tail(n, k), n)


def mcnemar_exact_log10(n_lost: int, n_gained: int) -> float:
    """log10 of `mcnemar_exact`'s p-value, finite at any count."""
    n = n_lost + n_gained
    if n == 0:
        return 0.0
    return min(0.0, _log10_ratio(2 * _half_tail(n, n - min(n_lost, n_gained)), n))


def p_text(p: float, log10_p: float | None = None) -> str:
    """A p-value in three significant digits; one below float's range from its log10
    (`2.1e-400`), never a bare 0."""
    if p > 0 or log10_p is None or not math.isfinite(log10_p):
        return f"{p:.3g}"
    exponent = math.floor(log10_p)
    mantissa = 10 ** (log10_p - exponent)
    if mantissa >= 9.995:  # rounds up to the next power of ten
        mantissa, exponent = 1.0, exponent + 1
    return f"{mantissa:.3g}e{exponent}"


def mcnemar_exact(n_lost: int, n_gained: int) -> float:
    """Two-sided exact McNemar p-value from the discordant counts (binomial test at 1/2).

    p = min(1, 2 · P(X <= min(b, c))), X ~ Binomial(b + c, 1/2), exact at any number of
    discordant pairs (`binomial_half_tail`).
    """
    n = n_lost + n_gained
    if n == 0:
        return 1.0
    return min(1.0, 2 * binomial_half_tail(n, n - min(n_lost, n_gained)))


def mean_interval(
    values: NDArray[np.floating], z: float = 1.959963984540054
) -> tuple[float, float]:
    """Normal-approximation 95% interval of the mean (mean ± z·sd/√n); a point when n < 2."""
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        return (math.nan, math.nan)
    mean = float(x.mean())
    if x.size < 2:
        return (mean, mean)
    half = z * float(x.std(ddof=1)) / math.sqrt(x.size)
    return (mean - half, mean + half)


def margin_buckets(
    margins: NDArray[np.floating],
    flipped: NDArray[np.bool_],
    edges: tuple[float, ...] = MARGIN_EDGES,
) -> list[dict[str, float | int]]:
    """Flip rate per baseline top-margin bucket [lo, hi) (the last bucket includes 1.0)."""
    m = np.asarray(margins, dtype=np.float64)
    f = np.asarray(flipped, dtype=bool)
    rows: list[dict[str, float | int]] = []
    for i, (lo, hi) in enumerate(zip(edges[:-1], edges[1:])):
        last = i == len(edges) - 2
        inside = (m >= lo) & ((m <= hi) if last else (m < hi))
        n = int(inside.sum())
        n_flips = int(f[inside].sum())
        rows.append(
            {"lo": lo, "hi": hi, "n": n, "flips": n_flips, "flip_rate": n_flips / n if n else 0.0}
        )
    return rows

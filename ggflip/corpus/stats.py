"""Corpus statistics of one quant against its baseline, with llama-perplexity's exact formulas.

Input: per scored token, the quant's and the baseline's negative log-likelihood of the actual
next token, the KL(base || quant) of the two next-token distributions, and whether both put
the same token on top. Output: everything `llama-perplexity --kl-divergence` prints, computed
the way tools/perplexity/perplexity.cpp computes it:

- `mean_and_uncertainty`: mean, and sqrt((E[x²] - E[x]²) / (n - 1)), zero when n <= 10;
- the covariance of the two log-likelihoods is (E[ab] - E[a]E[b]) / (n - 1), zero when n < 10,
  and enters the ln-ratio, ratio and difference uncertainties and their correlation;
- percentiles interpolate linearly at fraction·(n - 1) of the sorted values; the median is the
  middle value (mean of the two middle values for even n);
- RMS Δp's uncertainty propagates that of E[Δp²] (from E[Δp⁴]); same-top's is sqrt(p(1-p)/(n-1)).

Beyond llama-perplexity: the expected acceptance rate Σ min(p, q) per token
(`ggflip.scoring.acceptance`), its mean ± standard error and 10th percentile.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]

KL_PERCENTILES: tuple[float, ...] = (99.9, 99.0, 95.0, 90.0, 10.0, 5.0, 1.0, 0.1)
DP_PERCENTILES: tuple[float, ...] = (99.9, 99.0, 95.0, 90.0, 75.0, 25.0, 10.0, 5.0, 1.0, 0.1)


def mean_and_uncertainty(values: NDArray[np.floating]) -> tuple[float, float]:
    """Mean and standard error as llama-perplexity computes them (population variance / (n - 1))."""
    x = np.asarray(values, dtype=np.float64)
    n = x.size
    if n < 1:
        return (0.0, 0.0)
    mean = float(x.sum() / n)
    var = float((x * x).sum() / n - mean * mean)
    return (mean, math.sqrt(var / (n - 1)) if var > 0 and n > 10 else 0.0)


def covariance_of_means(a: NDArray[np.floating], b: NDArray[np.floating]) -> float:
    """Covariance of the two sample means, (E[ab] - E[a]E[b]) / (n - 1); zero below 10 values."""
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    n = x.size
    if n < 10:
        return 0.0
    return float(((x * y).sum() / n - (x.sum() / n) * (y.sum() / n)) / (n - 1))


def percentile(sorted_values: NDArray[np.floating], fraction: float) -> float:
    """llama-perplexity's percentile: linear interpolation at fraction·(n - 1) of sorted values."""
    v = np.asarray(sorted_values, dtype=np.float64)
    if fraction <= 0:
        return float(v[0])
    if fraction >= 1:
        return float(v[-1])
    p = fraction * (v.size - 1)
    ip = int(p)
    p -= ip
    return float((1 - p) * v[ip] + p * v[min(ip + 1, v.size - 1)])


def median(sorted_values: NDArray[np.floating]) -> float:
    """Middle value of sorted values; the mean of the two middle ones for an even count."""
    v = np.asarray(sorted_values, dtype=np.float64)
    half = v.size // 2
    return float(0.5 * (v[half] + v[half - 1])) if v.size % 2 == 0 else float(v[half])


def _key(prefix: str, pct: float) -> str:
    """JSON key of a percentile: kl_p99_9, kl_p99, dp_p0_1."""
    text = f"{pct:g}".replace(".", "_")
    return f"{prefix}_p{text}"


@dataclass(frozen=True)
class TokenScores:
    """Per scored token arrays of one quant against the baseline, all of shape (n,)."""

    nll: FloatArray
    nll_base: FloatArray
    kl: FloatArray
    same_top: NDArray[np.bool_]
    acceptance: FloatArray | None = None

    @property
    def p_diff(self) -> FloatArray:
        """Probability of the actual next token, quant minus baseline (llama.cpp's Δp)."""
        return np.exp(-self.nll) - np.exp(-self.nll_base)


@dataclass(frozen=True)
class KldStats:
    """Everything llama-perplexity prints for one quant; `*_unc` are its ± values (1 sigma)."""

    n_tokens: int
    ppl: float
    ppl_unc: float
    ppl_base: float
    ppl_base_unc: float
    ll_correlation: float
    ln_ppl_ratio: float
    ln_ppl_ratio_unc: float
    ppl_ratio: float
    ppl_ratio_unc: float
    ppl_diff: float
    ppl_diff_unc: float
    kl_mean: float
    kl_mean_unc: float
    kl_max: float
    kl_median: float
    kl_min: float
    kl_percentiles: dict[str, float]
    dp_mean: float
    dp_mean_unc: float
    dp_max: float
    dp_median: float
    dp_min: float
    dp_percentiles: dict[str, float]
    dp_rms: float
    dp_rms_unc: float
    same_top: float
    same_top_unc: float
    acceptance_mean: float = math.nan
    acceptance_mean_unc: float = math.nan
    acceptance_p10: float = math.nan

    def to_dict(self) -> dict[str, float | int]:
        """Flat JSON-ready mapping; percentiles become keys like `kl_p99_9` and `dp_p75`."""
        data = asdict(self)
        flat = {k: v for k, v in data.items() if not isinstance(v, dict)}
        flat.update(self.kl_percentiles)
        flat.update(self.dp_percentiles)
        return flat


def kld_stats(scores: TokenScores) -> KldStats:
    """Summarize per-token scores into llama-perplexity's statistics.

    Raises:
        ValueError: no scored tokens.
    """
    n = scores.kl.size
    if n == 0:
        raise ValueError("no scored tokens")
    p_diff = scores.p_diff
    mse, mse_unc = mean_and_uncertainty(p_diff * p_diff)
    rms = math.sqrt(mse)
    same = float(np.count_nonzero(scores.same_top)) / n
    accepted = (
        (math.nan, math.nan, math.nan)
        if scores.acceptance is None
        else (
            *mean_and_uncertainty(scores.acceptance),
            percentile(np.sort(scores.acceptance), 0.1),
        )
    )
    return KldStats(
        n_tokens=n,
        **_perplexities(scores.nll, scores.nll_base),
        **_distribution("kl", scores.kl, KL_PERCENTILES),
        **_distribution("dp", p_diff, DP_PERCENTILES),
        dp_rms=rms,
        dp_rms_unc=0.5 / rms * mse_unc if rms > 0 else 0.0,
        same_top=same,
        same_top_unc=math.sqrt(same * (1 - same) / (n - 1)) if n > 1 else 0.0,
        acceptance_mean=accepted[0],
        acceptance_mean_unc=accepted[1],
        acceptance_p10=accepted[2],
    )


def _perplexities(nll: FloatArray, nll_base: FloatArray) -> dict[str, Any]:
    """The quant's and the baseline's perplexities, their correlation, ratio and difference, each
    with llama-perplexity's uncertainty (the covariance of the two log-likelihoods included)."""
    log_ppl, log_ppl_unc = mean_and_uncertainty(nll)
    log_base, log_base_unc = mean_and_uncertainty(nll_base)
    cov = covariance_of_means(nll, nll_base)
    denominator = log_ppl_unc * log_base_unc
    ln_ratio = log_ppl - log_base
    ln_ratio_unc = math.sqrt(max(log_ppl_unc**2 + log_base_unc**2 - 2.0 * cov, 0.0))
    ppl, ppl_base = math.exp(log_ppl), math.exp(log_base)
    ppl_unc, ppl_base_unc = ppl * log_ppl_unc, ppl_base * log_base_unc
    ratio = math.exp(ln_ratio)
    diff_var = ppl_unc**2 + ppl_base_unc**2 - 2.0 * ppl * ppl_base * cov
    return {
        "ppl": ppl,
        "ppl_unc": ppl_unc,
        "ppl_base": ppl_base,
        "ppl_base_unc": ppl_base_unc,
        "ll_correlation": cov / denominator if denominator > 0 else math.nan,
        "ln_ppl_ratio": ln_ratio,
        "ln_ppl_ratio_unc": ln_ratio_unc,
        "ppl_ratio": ratio,
        "ppl_ratio_unc": ratio * ln_ratio_unc,
        "ppl_diff": ppl - ppl_base,
        "ppl_diff_unc": math.sqrt(max(diff_var, 0.0)),
    }


def _distribution(
    prefix: str, values: NDArray[np.floating], percentiles: tuple[float, ...]
) -> dict[str, Any]:
    """`<prefix>_mean` ± its uncertainty, max, median, min and `<prefix>_percentiles` of values."""
    ordered = np.sort(np.asarray(values, dtype=np.float64))
    mean, unc = mean_and_uncertainty(values)
    return {
        f"{prefix}_mean": mean,
        f"{prefix}_mean_unc": unc,
        f"{prefix}_max": float(ordered[-1]),
        f"{prefix}_median": median(ordered),
        f"{prefix}_min": float(ordered[0]),
        f"{prefix}_percentiles": {
            _key(prefix, pct): percentile(ordered, pct / 100) for pct in percentiles
        },
    }

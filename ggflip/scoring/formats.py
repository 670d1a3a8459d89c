"""The cell formatters every table uses (terminal, Markdown, HTML, the TUI), by name.

A metric's registry entry names one of `FORMATS`; a value that is unknown (None or NaN) shows
as "–". KL is shown with significant digits, so a floor of 1e-6 does not read as zero.
"""

from __future__ import annotations

import math
from collections.abc import Callable

DASH = "–"


def unknown(value: float | None) -> bool:
    """True for a value a table cannot show: None or NaN."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def pct(value: float | None, digits: int = 1) -> str:
    """A fraction as a percentage with `digits` decimals."""
    return DASH if unknown(value) else f"{100 * value:.{digits}f}%"  # type: ignore[operator]


def points(value: float | None) -> str:
    """A difference of fractions in percentage points, signed, one decimal."""
    return DASH if unknown(value) else f"{100 * value:+.1f}"  # type: ignore[operator]


def num(value: float | None, digits: int = 4) -> str:
    """A number with fixed decimals."""
    return DASH if unknown(value) else f"{value:.{digits}f}"


def sig(value: float | None, digits: int = 3) -> str:
    """A number with `digits` significant digits: fixed decimals down to 1e-4, then exponent."""
    if unknown(value):
        return DASH
    assert value is not None
    if value == 0 or not math.isfinite(value):
        return f"{value:g}"
    magnitude = math.floor(math.log10(abs(value)))
    if abs(value) < 1e-4:
        mantissa, exponent = f"{value:.{digits - 1}e}".split("e")
        return f"{mantissa}e{int(exponent)}"  # 1.00e-6, not 1.00e-06: fits a narrow column
    decimals = max(digits - 1 - magnitude, 0)
    text = f"{value:.{decimals}f}"
    if len(text.lstrip("-").replace(".", "").lstrip("0")) > digits and decimals > 0:
        text = f"{value:.{decimals - 1}f}"  # rounding carried into the next power of ten
    return text


def sig_pm(value: float | None, unc: float | None) -> str:
    """A value ± its uncertainty: the uncertainty with two significant digits and the value to
    the same decimals; both with significant digits when the uncertainty is zero or unknown."""
    if unknown(value):
        return DASH
    assert value is not None
    if unknown(unc) or not unc or abs(value) < 1e-4 or not math.isfinite(unc):
        return sig(value) if unknown(unc) else f"{sig(value)} ± {sig(unc, 2)}"
    decimals = max(1 - math.floor(math.log10(abs(unc))), 0)
    return f"{value:.{decimals}f} ± {unc:.{decimals}f}"


def count(value: float | None) -> str:
    """A whole number."""
    return DASH if unknown(value) else str(int(value))  # type: ignore[arg-type]


FORMATS: dict[str, Callable[[float | None], str]] = {
    "pct": pct,
    "points": points,
    "p": lambda value: num(value, 3),
    "kl": sig,
    "count": count,
    "ratio": lambda value: num(value, 4),
    "seconds": lambda value: num(value, 1),
    "tokens": lambda value: num(value, 0),
    "ppl": lambda value: num(value, 3),
    "sig": sig,
}
"""Formatter of each format name a metric may declare."""

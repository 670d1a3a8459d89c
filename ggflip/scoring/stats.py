"""Statistics over paired results: rank correlation across quants."""

from __future__ import annotations

import math

import numpy as np


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

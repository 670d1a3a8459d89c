"""Recompute every p-value of a multiple-choice report from its rows, independently of ggflip.

    python benchmarks/verify_pvalues.py REPORT.json

For each quant (and the floor) it counts, from the per-question rows alone, the discordant
pairs of McNemar's test (lost / gained) and, against the floor's rows paired by question index,
the flip and KL sign-test counts; then it computes each p-value with exact rational arithmetic
(`fractions.Fraction`, `math.comb`) and compares it with the report's own field. No ggflip code
is imported. Exit status 1 when any p-value or count differs.

The definitions, as ggflip documents them (`ggflip/scoring/floor.py`, `stats.mcnemar_exact`):
- McNemar: p = min(1, 2 P(X <= min(b, c))), X ~ Binomial(b + c, 1/2).
- floor flips: b = questions flipped by the quant only, c = by the floor only; p = P(X >= b).
- floor KL: b = questions whose KL is larger for the quant than for the floor, c = smaller
  (ties drop out); p = P(X >= b).
"""

from __future__ import annotations

import json
import math
import sys
from fractions import Fraction
from pathlib import Path


def upper_tail(n: int, k: int) -> Fraction:
    """P(X >= k), X ~ Binomial(n, 1/2), as an exact fraction."""
    if k <= 0:
        return Fraction(1)
    return Fraction(sum(math.comb(n, i) for i in range(k, n + 1)), 2**n)


def mcnemar(b: int, c: int) -> Fraction:
    n = b + c
    if n == 0:
        return Fraction(1)
    low = Fraction(sum(math.comb(n, i) for i in range(0, min(b, c) + 1)), 2**n)
    return min(Fraction(1), 2 * low)


def close(reported: float, exact: Fraction) -> bool:
    """The reported float is the exact value rounded (relative 1e-12), or both underflow."""
    if exact == 0 or float(exact) == 0.0:
        return reported == 0.0
    return abs(Fraction(reported) - exact) <= abs(exact) * Fraction(1, 10**12)


def log10_of(exact: Fraction) -> float:
    """log10 of an exact fraction of any size (Python's log10 takes integers of any size)."""
    return math.log10(exact.numerator) - math.log10(exact.denominator)


def check_log10(model: dict, key: str, exact: Fraction, problems: list[str]) -> str:
    """The report's log10 p-value (written where the p-value underflows) against the exact one."""
    if key not in model or model[key] is None:
        return ""
    if abs(model[key] - log10_of(exact)) > 1e-9:
        problems.append(f"{model['label']}: {key} {model[key]} != {log10_of(exact)}")
    return f" log10 p={log10_of(exact):.4f} (report {model[key]:.4f})"


def check(report: dict) -> list[str]:
    problems: list[str] = []
    floor = report.get("floor")
    floor_rows = {r["index"]: r for r in floor["rows"]} if floor else {}
    models = list(report["quants"]) + ([floor] if floor else [])
    for model in models:
        rows = model["rows"]
        lost = sum(1 for r in rows if r["flip"] == "correct_to_incorrect")
        gained = sum(1 for r in rows if r["flip"] == "incorrect_to_correct")
        p = mcnemar(lost, gained)
        line = f"{model['label']}: n={len(rows)} lost={lost} gained={gained}"
        line += f" McNemar p={float(p):.6g} (report {model['mcnemar_p']:.6g})"
        if (lost, gained) != (model["n_flips_lost"], model["n_flips_gained"]):
            problems.append(f"{model['label']}: flip counts differ from the report")
        if not close(model["mcnemar_p"], p):
            problems.append(f"{model['label']}: mcnemar_p {model['mcnemar_p']} != {float(p)}")
        if floor and model is not floor:
            paired = [(r, floor_rows[r["index"]]) for r in rows if r["index"] in floor_rows]
            fb = sum(1 for q, f in paired if q["flip"] and not f["flip"])
            fc = sum(1 for q, f in paired if f["flip"] and not q["flip"])
            kb = sum(1 for q, f in paired if q["kl"] > f["kl"])
            kc = sum(1 for q, f in paired if q["kl"] < f["kl"])
            pf, pk = upper_tail(fb + fc, fb), upper_tail(kb + kc, kb)
            line += (
                f"; vs floor on {len(paired)}: flips {fb} vs {fc} p={float(pf):.6g}"
                f" (report {model['floor_flips_p']:.6g})"
                + check_log10(model, "floor_flips_log10_p", pf, problems)
                + f"; KL larger on {kb}, smaller on {kc} p={float(pk):.6g}"
                f" (report {model['floor_kl_p']:.6g})"
                + check_log10(model, "floor_kl_log10_p", pk, problems)
                + f"; verdict {model['verdict']}"
            )
            if not close(model["floor_flips_p"], pf):
                problems.append(f"{model['label']}: floor_flips_p differs")
            if not close(model["floor_kl_p"], pk):
                problems.append(f"{model['label']}: floor_kl_p differs")
            expected = "different" if min(pf, pk) < Fraction(5, 100) else "indistinguishable"
            if model["verdict"] != expected:
                problems.append(f"{model['label']}: verdict {model['verdict']} != {expected}")
        print(line)
    return problems


def main() -> int:
    report = json.loads(Path(sys.argv[1]).read_text())
    problems = check(report)
    for problem in problems:
        print("MISMATCH", problem)
    print("all p-values equal the exact computation" if not problems else "MISMATCHES found")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

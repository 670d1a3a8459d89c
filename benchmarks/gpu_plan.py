"""The sizing and the results document of `benchmarks/gpu.py`: pure functions, no model.

Sizing: every measurement's cost is estimated from llama-bench's first pp512 rate and fixed
start-up costs (`Rates`); the full sizes (`FULL`) are kept when they fit the time left, else one
alternating round instead of two, then every size scaled by one factor (never below `SMOKE`)
to the largest that fits, each cut named. `--cpu-smoke` takes `SMOKE` as it is.

The document: one JSON object (`SCHEMA`), checked by `check_document` before it is written; each
comparison holds both sides' tokens/s per run, their means and the ratio of the means.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from statistics import fmean

SCHEMA = "ggflip-gpu-benchmark/1"
CTX = 512  # corpus chunk length, both tools
# Full-prompt tokens per question on Gemma 3's tokenizer (benchmarks/throughput.py's runs).
TOKENS_PER_QUESTION = {"mmlu0": 118, "mmlu5": 296, "cloze": 254}
# Assumed ggflip rate per pass as a share of pp512, for sizing only (5-shot decodes its shots
# once per subject; corpus mode's baseline pass records and its quant pass scores every row).
ASSUMED_SHARE = {"mmlu0": 0.5, "mmlu5": 2.0, "cloze": 0.5, "corpus": 0.4, "llama_kl": 0.5}
# The targets: ggflip's tokens/s over the reference's (None: shown, no target).
TARGETS: dict[str, float | None] = {
    "mmlu_0shot": 0.9,
    "mmlu_5shot": None,
    "cloze": 0.5,
    "corpus": 1.0,
    "generation": 0.8,
}
# On a CPU (`--cpu-full`), the CPU targets: the corpus one is llama-perplexity's wall
# time, the same comparison as tokens/s over the same tokens.
CPU_TARGETS: dict[str, float | None] = {
    "mmlu_0shot": 0.95,
    "mmlu_5shot": None,
    "cloze": None,
    "corpus": 1.0,
    "generation": 0.8,
}
REFERENCES = {
    "mmlu_0shot": "llama-bench pp512",
    "mmlu_5shot": "llama-bench pp512",
    "cloze": "llama-bench pp512",
    "corpus": "llama-perplexity --kl-divergence-base, then --kl-divergence",
    "generation": "llama-batched-bench, generated tokens over prefill + generation time",
}


@dataclass(frozen=True)
class Sizes:
    """How much each measurement does."""

    mmlu0: int  # MMLU 0-shot questions
    mmlu5: int  # MMLU 5-shot questions, one subject (shots shared as in full MMLU)
    cloze: int  # cloze questions, same subject
    chunks: int  # corpus chunks of CTX tokens
    gen_batch: int  # sequences generated together, both tools
    gen_prompt: int  # prompt tokens per sequence, both tools
    gen_tokens: int  # new tokens per sequence
    rounds: int  # alternating rounds of the corpus and generation comparisons
    repetitions: int  # llama-bench -r


SMOKE = Sizes(8, 4, 4, 2, 4, 32, 16, 1, 1)
FULL = Sizes(800, 198, 198, 40, 16, 128, 256, 2, 3)
SCALED_FIELDS = ("mmlu0", "mmlu5", "cloze", "chunks", "gen_tokens")


@dataclass(frozen=True)
class Rates:
    """What sizing assumes: the first pp512 measurement and fixed costs."""

    decode_tps: float  # llama-bench pp512
    python_s: float = 6.0  # a Python process's start-up and one model load
    tool_s: float = 3.0  # a llama.cpp tool's start-up and model load
    min_step_s: float = 0.004  # one generation step at least (a GPU's launch latency)


def estimate(sizes: Sizes, rates: Rates) -> dict[str, float]:
    """Estimated seconds of each stage, both sides and their pp512 references included."""
    decode = rates.decode_tps
    pp512 = rates.tool_s + (sizes.repetitions + 1) * 512 / decode

    def mmlu(kind: str, n: int) -> float:
        tokens = n * TOKENS_PER_QUESTION[kind]
        return 2 * rates.python_s + 2 * tokens / (decode * ASSUMED_SHARE[kind]) + pp512

    corpus_tokens = sizes.chunks * CTX
    corpus_round = (
        2 * rates.python_s
        + 2 * corpus_tokens / (decode * ASSUMED_SHARE["corpus"])
        + 3 * rates.tool_s
        + 3 * corpus_tokens / (decode * ASSUMED_SHARE["llama_kl"])
    )
    step = max(sizes.gen_batch / (decode * 0.15), rates.min_step_s)
    work = sizes.gen_batch * sizes.gen_prompt / decode + sizes.gen_tokens * step
    generation = (sizes.rounds + 1) * (rates.tool_s + work) + sizes.rounds * (rates.python_s + work)
    return {
        "pp512_first": pp512,
        "mmlu_0shot": mmlu("mmlu0", sizes.mmlu0),
        "cloze": mmlu("cloze", sizes.cloze),
        "corpus": sizes.rounds * corpus_round,
        "generation": generation,
        "mmlu_5shot": pp512 + mmlu("mmlu5", sizes.mmlu5),
    }


def scaled(base: Sizes, factor: float) -> Sizes:
    """`base` with every size in SCALED_FIELDS times `factor` (rounded up), never below SMOKE's."""
    changes = {
        name: max(getattr(SMOKE, name), math.ceil(getattr(base, name) * factor))
        for name in SCALED_FIELDS
    }
    return dataclasses.replace(base, **changes)


def plan_sizes(budget_s: float, rates: Rates, smoke: bool) -> tuple[Sizes, list[str]]:
    """The sizes that fit `budget_s` seconds by `estimate`, and one line per cut from FULL."""
    if smoke:
        return SMOKE, ["smoke run: the smallest sizes (--cpu-smoke, or no GPU)"]
    if sum(estimate(FULL, rates).values()) <= budget_s:
        return FULL, []
    one_round = dataclasses.replace(FULL, rounds=1)
    low, high = 0.0, 1.0
    if sum(estimate(one_round, rates).values()) <= budget_s:
        low = 1.0
    else:
        for _ in range(40):
            middle = (low + high) / 2
            if sum(estimate(scaled(one_round, middle), rates).values()) <= budget_s:
                low = middle
            else:
                high = middle
    sizes = scaled(one_round, low)
    cuts = [
        f"{field.name}: {getattr(FULL, field.name)} -> {getattr(sizes, field.name)}"
        for field in dataclasses.fields(Sizes)
        if getattr(FULL, field.name) != getattr(sizes, field.name)
    ]
    total = sum(estimate(sizes, rates).values())
    if total > budget_s:
        cuts.append(
            f"even the smallest sizes are estimated at {total:.0f} s, over {budget_s:.0f} s"
        )
    return sizes, [f"{cut} (to fit {budget_s:.0f} s)" for cut in cuts]


def comparison(
    name: str,
    ggflip_runs: list[float],
    reference_runs: list[float],
    targets: dict[str, float | None] = TARGETS,
    **details: object,
) -> dict:
    """One measurement's entry: both sides' tokens/s per run, their means, the ratio of the means
    and whether it meets the issue's target (`targets`: TARGETS on a GPU, CPU_TARGETS on a CPU)."""
    ggflip_tps, reference_tps = fmean(ggflip_runs), fmean(reference_runs)
    ratio = ggflip_tps / reference_tps
    target = targets[name]
    return {
        "reference": REFERENCES[name],
        "ggflip_tps": ggflip_tps,
        "reference_tps": reference_tps,
        "ratio": ratio,
        "target": target,
        "meets_target": None if target is None else ratio >= target,
        "ggflip_runs_tps": ggflip_runs,
        "reference_runs_tps": reference_runs,
        **details,
    }


TOP_KEYS = {
    "schema": str,
    "started_utc": str,
    "wall_s": float,
    "device": dict,
    "build": dict,
    "versions": dict,
    "settings": dict,
    "sizes": dict,
    "cuts": list,
    "timings_s": dict,
    "measurements": dict,
}
ENTRY_KEYS = {
    "reference": str,
    "ggflip_tps": float,
    "reference_tps": float,
    "ratio": float,
    "ggflip_runs_tps": list,
    "reference_runs_tps": list,
    "load_average": list,
}


def check_document(doc: dict) -> list[str]:
    """What is wrong with a results document (empty when nothing): missing or mistyped keys, a
    measurement neither in TARGETS nor skipped, a ratio that is not the ratio of its means."""
    problems = [
        f"{key}: expected {kind.__name__}"
        for key, kind in TOP_KEYS.items()
        if not isinstance(doc.get(key), kind)
    ]
    if doc.get("schema") != SCHEMA:
        problems.append(f"schema: expected {SCHEMA}")
    for name, entry in (doc.get("measurements") or {}).items():
        if name not in TARGETS:
            problems.append(f"measurements.{name}: not a known measurement")
        elif "skipped" in entry:
            continue
        problems += [
            f"measurements.{name}.{key}: expected {kind.__name__}"
            for key, kind in ENTRY_KEYS.items()
            if not isinstance(entry.get(key), kind)
        ]
        try:
            means = fmean(entry["ggflip_runs_tps"]) / fmean(entry["reference_runs_tps"])
            if not math.isclose(means, entry["ratio"], rel_tol=1e-9):
                problems.append(f"measurements.{name}.ratio: not the ratio of the runs' means")
        except (KeyError, TypeError, ZeroDivisionError, ValueError):
            problems.append(f"measurements.{name}: runs missing")
    return problems

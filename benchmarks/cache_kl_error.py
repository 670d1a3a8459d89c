"""How far the cached KL and acceptance are from the exact full-vocabulary values, per row, on a
real model.

Rows of three kinds, all from MMLU test questions: **letter** (the answer position of the zero-shot
letter prompt, one per question), **cloze** (every token of each option's text after
"Question: …\\nAnswer:", as a cloze run scores continuations) and **corpus** (the second half of
512-token chunks of the questions written out as text, as `ggflip kld` scores them). The baseline
and every chosen quant are open together and each row is compared as it is decoded (no full rows
are kept). For every K asked (default: the modes' defaults, cloze 64, generation 256, letter and
corpus 512) the baseline row becomes the compact record of `ggflip.scoring.topk` (S draws, seeded
per row; S is the mode's default, 128 for cloze and 32 otherwise, unless --tail-samples) and
ggflip's kernel (`kl_rows`, `acceptance_rows`) is compared with the exact float64 KL(base ||
quant) and Σ min(p, q) of the full rows. Printed per quant, kind and K: the exact mean
KL; the per-row relative error |estimate / exact - 1| of ggflip's KL at p50, p90 and p99; the
max-row ratio (largest estimated row KL / largest exact row KL); the same for the plain "k3" tail
estimate (mean(r - 1 - ln r), the estimator before the lifted-token split) and for the lower
bound; and the acceptance's mean error and per-row p90 |error| in points, for the draws-based
estimate and for the min(P_tail, Q_tail) upper bound.

    python benchmarks/cache_kl_error.py --quant Q2_K --quant Q3_K_M --quant Q8_0 --rows 256
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ggflip.backends.base import ScoreRequest  # noqa: E402
from ggflip.backends.llama import LlamaBackendFactory  # noqa: E402
from ggflip.choice.spec import DEFAULT_CLOZE_TAIL_SAMPLES  # noqa: E402
from ggflip.config.models_toml import load_models_toml  # noqa: E402
from ggflip.scoring import kernels  # noqa: E402
from ggflip.scoring.acceptance import acceptance_exact, acceptance_rows  # noqa: E402
from ggflip.scoring.topk import (  # noqa: E402
    DEFAULT_TAIL_SAMPLES,
    BaselineRows,
    baseline_normalize,
    kl_rows,
    normalize,
)
from ggflip.tasks.prompts import render_prompt  # noqa: E402
from ggflip.tasks.questions import Question, load_questions, select_questions  # noqa: E402
from ggflip.tasks.registry import get_task  # noqa: E402

CHUNK = 512  # corpus rows: the second half of each chunk, as llama-perplexity scores it
STEP = 64  # positions per decode request: 64 full rows per model in memory at once


def requests(kind: str, questions: list[Question], tokenize, n_rows: int) -> Iterator[ScoreRequest]:  # type: ignore[no-untyped-def]
    """Decode requests of one row kind until `n_rows` rows, at most STEP positions each."""
    if kind == "letter":
        for q in questions[:n_rows]:
            tokens = tuple(tokenize(render_prompt(q), add_bos=True))
            yield ScoreRequest(tokens, (len(tokens) - 1,))
    elif kind == "cloze":
        given = 0
        for q in questions:
            context = tokenize(f"Question: {q.text}\nAnswer:", add_bos=True)
            for choice in q.choices:
                tokens = tuple(context + tokenize(" " + choice, add_bos=False))
                positions = tuple(range(len(context) - 1, len(tokens) - 1))[: n_rows - given]
                given += len(positions)
                yield ScoreRequest(tokens, positions)
                if given >= n_rows:
                    return
    else:
        text = "\n\n".join(
            f"{q.text}\n" + "\n".join(q.choices) + f"\nAnswer: {q.choices[q.gold]}"
            for q in questions
        )
        tokens = tokenize(text, add_bos=False)
        for start in range(0, len(tokens) - CHUNK, CHUNK):
            chunk = tuple(tokenize("", add_bos=True)[:1] + tokens[start : start + CHUNK - 1])
            for first in range(CHUNK // 2, CHUNK - 1, STEP):
                positions = tuple(range(first, min(first + STEP, CHUNK - 1, first + n_rows)))
                n_rows -= len(positions)
                yield ScoreRequest(chunk, positions)
                if n_rows <= 0:
                    return


def compare_rows(
    base: np.ndarray, quant: np.ndarray, ks: list[int], n_samples: int, seed: int
) -> dict[str, np.ndarray]:
    """Exact and estimated KL and acceptance of each row (arrays of shape (n_rows,) or (K, n))."""
    out: dict[str, list[list[float]]] = {}
    for row in range(len(base)):
        p, q = kernels.log_softmax(base[row]), kernels.log_softmax(quant[row])
        out.setdefault("exact", []).append([float(kernels.kl_divergence(p, q))])
        out.setdefault("acc_exact", []).append([float(acceptance_exact(p, q))])
        for name in ("kl", "k3", "bound", "acc", "acc_bound"):
            out.setdefault(name, []).append([])
        for k in ks:
            rng = np.random.default_rng([seed + row, k])
            _, record = baseline_normalize(base[row : row + 1], k, n_samples, rng)
            norm = normalize(quant[row : row + 1], record.top_ids)
            bound, gap = kl_rows(record, norm)
            out["kl"][-1].append(float(bound[0] + gap[0]))
            out["k3"][-1].append(float(bound[0]) + _k3_gap(record, norm))
            out["bound"][-1].append(float(bound[0]))
            out["acc"][-1].append(float(acceptance_rows(record, norm)[0]))
            bare = BaselineRows(
                *(getattr(record, f) for f in ("top_ids", "top_logprobs", "tail_logmass")),
                record.sample_ids[:, :0],
                record.sample_logprobs[:, :0],
            )
            out["acc_bound"][-1].append(float(acceptance_rows(bare, norm)[0]))
    return {name: np.array(values) for name, values in out.items()}


def _k3_gap(record: BaselineRows, norm) -> float:  # type: ignore[no-untyped-def]
    """The plain k3 tail estimate P(tail)·mean(r - 1 - ln r), for comparison."""
    p_tail = float(record.tail_logmass[0])
    if not np.isfinite(p_tail) or record.sample_ids.shape[1] == 0:
        return 0.0
    q_tail = float(norm.tail_logmass(record.top_ids)[0])
    q_s = norm.logprobs_at(record.sample_ids.astype(np.int64))[0] - q_tail
    log_r = q_s - (record.sample_logprobs[0] - p_tail)
    return max(float(np.exp(p_tail) * np.mean(np.expm1(log_r) - log_r)), 0.0)


def report(label: str, kind: str, ks: list[int], rows: dict[str, np.ndarray]) -> None:
    """One line per K: error percentiles and max-row ratios of each estimate."""
    exact = rows["exact"][:, 0]
    for at, k in enumerate(ks):
        cells = [f"{label:<8}{kind:<8}{k:>5}{len(exact):>6}{exact.mean():>10.5f}"]
        for name in ("kl", "k3", "bound"):
            est = rows[name][:, at]
            err = np.abs(est / np.where(exact > 0, exact, np.nan) - 1)
            p50, p90, p99 = np.nanquantile(err, [0.5, 0.9, 0.99])
            cells.append(f"{p50:>7.2%}{p90:>7.2%}{p99:>8.2%}{est.max() / exact.max():>7.3f}")
        for name in ("acc", "acc_bound"):
            diff = (rows[name][:, at] - rows["acc_exact"][:, 0]) * 100
            cells.append(f"{diff.mean():>+8.3f}{np.quantile(np.abs(diff), 0.9):>7.3f}")
        print(" ".join(cells), flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, default=Path("models.toml"))
    parser.add_argument("--set", dest="set_name", default="gemma-270m")
    parser.add_argument("--quant", action="append", help="quant label prefix (repeatable)")
    parser.add_argument("--rows", type=int, default=256, help="rows per kind")
    parser.add_argument("--kinds", default="letter,cloze,corpus")
    parser.add_argument("--ks", default="64,256,512")
    parser.add_argument(
        "--tail-samples", type=int, default=None, help="tail draws (default: the mode's, 128 cloze)"
    )
    args = parser.parse_args()
    model_set = load_models_toml(args.models).get_set(args.set_name)
    source, known_bad = get_task("mmlu").default_source()
    questions = list(
        select_questions(
            load_questions(source, skip_bad_rows=known_bad), limit=max(args.rows, 64), seed=0
        ).questions
    )
    wanted = args.quant or ["Q8_0", "Q3_K_M", "Q2_K"]
    quants = [q for q in model_set.quants if any(q.label.startswith(w) for w in wanted)]
    factory = LlamaBackendFactory()
    base = factory.open(model_set.baseline)
    opened = [(q.label.split()[0], factory.open(q)) for q in quants]
    ks = [int(k) for k in args.ks.split(",")]
    print(
        f"baseline {model_set.baseline.label}; per-row |error| "
        "p50 p90 p99 and max-row ratio of: ggflip's KL | plain k3 | lower bound; acceptance "
        "mean error and p90 |error| in points: draws estimate | min(P_tail, Q_tail) bound"
    )
    for kind in args.kinds.split(","):
        cloze = kind == "cloze"
        n_samples = args.tail_samples
        if n_samples is None:
            n_samples = DEFAULT_CLOZE_TAIL_SAMPLES if cloze else DEFAULT_TAIL_SAMPLES
        print(f"{kind}: {n_samples} tail draws", flush=True)
        found: dict[str, list[dict[str, np.ndarray]]] = {label: [] for label, _ in opened}
        for index, request in enumerate(requests(kind, questions, base.tokenize, args.rows)):
            base_logits = base.logits([request])[0]
            for label, backend in opened:
                quant_logits = backend.logits([request])[0]
                found[label].append(
                    compare_rows(base_logits, quant_logits, ks, n_samples, 1000 * index)
                )
        for label, parts in found.items():
            rows = {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}
            report(label, kind, ks, rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

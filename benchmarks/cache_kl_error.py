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

`--formats` instead compares ways of storing the record, on corpus rows (the questions as text,
or `--text FILE`) at K = 512 and S = 32: float64 log-probs (the format before), float32
log-probs, float32 offsets from the row's largest top log-prob (a float64), float32 logits with
the row's float64 log-sum-exp (what `ggflip.scoring.topk` keeps), and a per-row K (the fewest top
tokens whose tail mass is below a bound, capped at K; float32 logits). Printed per quant and
format: bytes per position (the record, and the corpus cache's with the next token's log-prob,
against llama-perplexity's file), |error| max and mean of the lower bound against the same bound
from float64 full rows (deterministic: what storage and the kernel's numerics add), of the KL
estimate against the float64-record estimate (same ids and draws: what storage adds) and against
the exact float64 full-vocabulary KL, and the self floor (largest KL of the baseline against its
own row through the record).

    python benchmarks/cache_kl_error.py --formats --quant Q8_0 --quant Q2_K --rows 256
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ggflip.backends.base import ScoreRequest  # noqa: E402
from ggflip.backends.llama import LlamaBackendFactory  # noqa: E402
from ggflip.choice.spec import DEFAULT_CLOZE_TAIL_SAMPLES  # noqa: E402
from ggflip.config.models_toml import load_models_toml  # noqa: E402
from ggflip.corpus.cache import llama_cpp_bytes_per_token  # noqa: E402
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


def requests(  # type: ignore[no-untyped-def]
    kind: str, questions: list[Question], tokenize, n_rows: int, text: str | None = None
) -> Iterator[ScoreRequest]:
    """Decode requests of one row kind until `n_rows` rows, at most STEP positions each (corpus
    rows from `text` when given)."""
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
        text = text or "\n\n".join(
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
            bare = replace(
                record,
                sample_ids=record.sample_ids[:, :0],
                sample_logits=record.sample_logits[:, :0],
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


@dataclass(frozen=True)
class Float64Rows:
    """A record whose log-probs are float64 arrays as given (the format before, or float32
    log-probs widened back): `kl_rows` reads these five attributes."""

    top_ids: np.ndarray
    top_logprobs: np.ndarray
    tail_logmass: np.ndarray
    sample_ids: np.ndarray
    sample_logprobs: np.ndarray


def row_k(base_logprobs: np.ndarray, bound: float, cap: int) -> int:
    """The fewest top tokens whose tail (the mass outside them, summed smallest first) is below
    `bound`, at most `cap`."""
    probs = np.sort(np.exp(base_logprobs))  # ascending
    tails = np.cumsum(probs)[::-1]  # tails[k]: the mass outside the k largest
    below = np.flatnonzero(tails < bound)
    return int(min(below[0] if below.size else probs.size, cap))


def format_records(
    base_row: np.ndarray, k: int, n_samples: int, seed: int, bounds: list[float]
) -> dict[str, tuple[object, int]]:
    """Each storage format's record of one baseline row (1, n_vocab), with its bytes."""
    rng = lambda: np.random.default_rng([seed, k])  # noqa: E731
    _, record = baseline_normalize(base_row, k, n_samples, rng())
    as_float64 = Float64Rows(
        record.top_ids,
        record.top_logprobs,
        record.tail_logmass,
        record.sample_ids,
        record.sample_logprobs,
    )
    widened = Float64Rows(
        *(
            getattr(as_float64, name).astype(np.float32).astype(np.float64)
            if name.endswith("logprobs")
            else getattr(as_float64, name)
            for name in Float64Rows.__dataclass_fields__
        )
    )
    fixed = 8 * k + 8 * n_samples
    found: dict[str, tuple[object, int]] = {
        "float64 log-probs (before)": (as_float64, 12 * k + 12 * n_samples + 8),
        "float32 log-probs": (widened, fixed + 8),
        "f32 offsets from max lp": (
            BaselineRows.of_logprobs(*as_float64.__dict__.values()),
            fixed + 16,
        ),
        "f32 logits + f64 lse (new)": (record, fixed + 16),
    }
    logprobs = kernels.log_softmax(base_row[0])
    for bound in bounds:
        own_k = max(row_k(logprobs, bound, k), 1)
        _, own = baseline_normalize(base_row, own_k, n_samples, rng())
        found[f"per-row K, tail<{bound:g}"] = (own, 8 * own_k + 8 * n_samples + 16 + 4)
    return found


def compare_formats(
    base: np.ndarray, quant: np.ndarray, k: int, n_samples: int, seed: int, bounds: list[float]
) -> dict[str, np.ndarray]:
    """Per row and format: bytes, bound error, estimate, exact KL, self floor."""
    out: dict[str, list[list[float]]] = {}
    for row in range(len(base)):
        p, q = kernels.log_softmax(base[row]), kernels.log_softmax(quant[row])
        exact = float(kernels.kl_divergence(p, q))
        records = format_records(base[row : row + 1], k, n_samples, seed + row, bounds)
        for name, (record, size) in records.items():
            ids = np.asarray(record.top_ids[0], dtype=np.int64)  # type: ignore[attr-defined]
            norm = normalize(quant[row : row + 1], ids[None])
            bound, gap = kl_rows(record, norm)  # type: ignore[arg-type]
            own = normalize(base[row : row + 1], ids[None])
            floor = sum(kl_rows(record, own))  # type: ignore[arg-type]
            values = [size, float(bound[0]), _coarse_kl(p, q, ids), float(bound[0] + gap[0])]
            out.setdefault(name, []).append([*values, exact, float(floor[0])])
    return {name: np.array(values) for name, values in out.items()}


def _coarse_kl(p: np.ndarray, q: np.ndarray, ids: np.ndarray) -> float:
    """The lower bound from float64 full rows: exact KL of the top `ids` and the merged tail."""
    head = float(np.sum(np.exp(p[ids]) * (p[ids] - q[ids])))
    outside = np.ones(p.size, dtype=bool)
    outside[ids] = False
    if not outside.any():
        return head
    p_tail, q_tail = kernels.logsumexp(p[outside]), kernels.logsumexp(q[outside])
    return head + float(np.exp(p_tail) * (p_tail - q_tail))


def report_formats(label: str, found: dict[str, np.ndarray], n_vocab: int) -> None:
    """One line per format: bytes, ratio, |error| max / mean of each comparison, self floor."""
    theirs = llama_cpp_bytes_per_token(n_vocab)
    before = found["float64 log-probs (before)"][:, 3]
    for name, rows in found.items():
        size = rows[:, 0].mean()
        cells = [f"{label:<7}{name:<28}{size:>8.0f}{theirs / (size + 8):>7.1f}x"]
        for error in (rows[:, 1] - rows[:, 2], rows[:, 3] - before, rows[:, 3] - rows[:, 4]):
            cells.append(f"{np.abs(error).max():>10.2e}{np.abs(error).mean():>10.2e}")
        cells.append(f"{rows[:, 5].max():>10.2e}")
        print("".join(cells), flush=True)


def run_formats(args: argparse.Namespace, base, opened, questions) -> None:  # type: ignore[no-untyped-def]
    """The `--formats` table: corpus rows of the questions' text (or --text)."""
    bounds = [float(b) for b in args.bounds.split(",") if b]
    text = args.text.read_text() if args.text else None
    found: dict[str, list[dict[str, np.ndarray]]] = {label: [] for label, _ in opened}
    n_vocab = 0
    for index, request in enumerate(requests("corpus", questions, base.tokenize, args.rows, text)):
        base_logits = base.logits([request])[0]
        n_vocab = base_logits.shape[-1]
        for label, backend in opened:
            quant_logits = backend.logits([request])[0]
            found[label].append(
                compare_formats(base_logits, quant_logits, 512, 32, 1000 * index, bounds)
            )
    n_rows = sum(len(part["f32 logits + f64 lse (new)"]) for part in next(iter(found.values())))
    source = args.text or "MMLU test questions as text"
    print(f"{n_rows} corpus rows of {source}, n_vocab {n_vocab}, K = 512, S = 32")
    print(
        f"{'quant':<7}{'format':<28}{'B/pos':>8}{'ratio':>8}"
        f"{'bound max':>10}{'mean':>10}{'vs f64 max':>10}{'mean':>10}"
        f"{'exact max':>10}{'mean':>10}{'self max':>10}"
    )
    for label, parts in found.items():
        merged = {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}
        report_formats(label, merged, n_vocab)


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
    parser.add_argument("--formats", action="store_true", help="compare storage formats")
    parser.add_argument("--text", type=Path, help="--formats: a corpus text file")
    parser.add_argument(
        "--bounds", default="1e-3,1e-5", help="--formats: per-row K tail-mass bounds"
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
    if args.formats:
        run_formats(args, base, opened, questions)
        return 0
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

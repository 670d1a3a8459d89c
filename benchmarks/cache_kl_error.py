"""How far the cached KL is from the exact full-vocabulary KL, on a real model.

Scores the same MMLU prompts with the baseline and each chosen quant, one prompt per decode,
and for several K compares the exact float64 KL(base || quant) with what ggflip's one kernel
(`ggflip.scoring.topk`) computes from the baseline's compact record: the lower bound (top K +
merged tail) and the estimate (lower bound + sampled tail gap, S draws; what `kl_mean` reports),
the draws seeded per question as a run seeds them. Prints, per quant and K: the means of the
exact KL, the lower bound and the estimate, each one's error relative to the exact mean, the
mean tail mass and the record's bytes per question.

    python benchmarks/cache_kl_error.py --set gemma-270m --quant Q2_K --questions 50
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ggflip.backends.base import ScoreRequest  # noqa: E402
from ggflip.backends.llama import LlamaBackendFactory  # noqa: E402
from ggflip.choice.answers import TAIL_SAMPLING_SEED  # noqa: E402
from ggflip.config.models_toml import load_models_toml  # noqa: E402
from ggflip.scoring import kernels  # noqa: E402
from ggflip.scoring.topk import (  # noqa: E402
    DEFAULT_TAIL_SAMPLES,
    baseline_normalize,
    kl_rows,
    normalize,
)
from ggflip.tasks.prompts import render_prompt  # noqa: E402
from ggflip.tasks.questions import load_questions, select_questions  # noqa: E402
from ggflip.tasks.registry import get_task  # noqa: E402


def answer_logits(backend, prompts: list[str]) -> list[np.ndarray]:  # type: ignore[no-untyped-def]
    """The float32 logits at each prompt's answer position, one prompt per decode."""
    out = []
    for prompt in prompts:
        tokens = tuple(backend.tokenize(prompt, add_bos=True))
        out.append(backend.logits([ScoreRequest(tokens, (len(tokens) - 1,))])[0])
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, default=Path("models.toml"))
    parser.add_argument("--set", dest="set_name", default="gemma-270m")
    parser.add_argument(
        "--quant", action="append", help="quant label prefix (repeatable; default Q8_0 and Q2_K)"
    )
    parser.add_argument("--questions", type=int, default=50)
    parser.add_argument("--ks", default="16,64,256,512,2048")
    parser.add_argument("--tail-samples", type=int, default=DEFAULT_TAIL_SAMPLES)
    args = parser.parse_args()
    model_set = load_models_toml(args.models).get_set(args.set_name)
    source, known_bad = get_task("mmlu").default_source()
    questions = select_questions(
        load_questions(source, skip_bad_rows=known_bad), limit=args.questions, seed=0
    )
    prompts = [render_prompt(q) for q in questions.questions]
    factory = LlamaBackendFactory()
    base = factory.open(model_set.baseline)
    base_logits = answer_logits(base, prompts)
    base.close()
    base_lp = [kernels.log_softmax(row[0]) for row in base_logits]
    ks = [int(k) for k in args.ks.split(",")]
    wanted = args.quant or ["Q8_0", "Q2_K"]
    print(
        f"{len(prompts)} MMLU prompts, baseline {model_set.baseline.label}, vocabulary "
        f"{base_lp[0].size}, {args.tail_samples} tail draws"
    )
    print(
        f"{'quant':<10}{'K':>6}{'bytes/q':>9}{'exact KL':>11}{'bound':>11}{'bound err':>11}"
        f"{'estimate':>11}{'est err':>9}{'mean tail':>11}"
    )
    for quant in model_set.quants:
        if not any(quant.label.startswith(w) for w in wanted):
            continue
        backend = factory.open(quant)
        quant_logits = answer_logits(backend, prompts)
        backend.close()
        exact = np.array(
            [
                kernels.kl_divergence(p, kernels.log_softmax(q[0]))
                for p, q in zip(base_lp, quant_logits)
            ]
        )
        for k in ks:
            lower, estimate, tails = [], [], []
            for index, (p, q) in enumerate(zip(base_logits, quant_logits)):
                rng = np.random.default_rng([index, TAIL_SAMPLING_SEED])
                _, record = baseline_normalize(p, k, args.tail_samples, rng)
                bound, gap = kl_rows(record, normalize(q, record.top_ids))
                lower.append(float(bound[0]))
                estimate.append(float(bound[0] + gap[0]))
                tails.append(float(np.exp(record.tail_logmass[0])))
            # the record's own bytes per scored position, plus the top token (int32) a question
            # keeps beside it
            size = sum(getattr(record, name).nbytes for name in record.__dataclass_fields__) + 4
            bound_err = np.mean(lower) / exact.mean() - 1
            est_err = np.mean(estimate) / exact.mean() - 1
            print(
                f"{quant.label.split()[0]:<10}{k:>6}{size:>9}"
                f"{exact.mean():>11.5f}{np.mean(lower):>11.5f}{bound_err:>+11.2%}"
                f"{np.mean(estimate):>11.5f}{est_err:>+9.2%}{np.mean(tails):>11.4f}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""How far the cached (top-K + tail) KL is from the exact full-vocabulary KL, on a real model.

Loads the baseline and one quant side by side, scores the same MMLU prompts with both, and
for several K compares exact KL(base || quant) with the KL ggflip computes from the baseline's
top K plus tail mass. Prints, per K: mean and max absolute gap, mean relative gap, mean tail
mass and the cache bytes per question.

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
from ggflip.config.models_toml import load_models_toml  # noqa: E402
from ggflip.scoring import kernels  # noqa: E402
from ggflip.tasks.prompts import render_prompt  # noqa: E402
from ggflip.tasks.questions import load_questions, select_questions  # noqa: E402
from ggflip.tasks.registry import get_task  # noqa: E402


def full_logprobs(backend, prompts: list[str]) -> list[np.ndarray]:  # type: ignore[no-untyped-def]
    out = []
    for prompt in prompts:
        tokens = tuple(backend.tokenize(prompt, add_bos=True))
        logits = backend.logits([ScoreRequest(tokens, (len(tokens) - 1,))])[0][0]
        out.append(kernels.log_softmax(logits))
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
    args = parser.parse_args()
    model_set = load_models_toml(args.models).get_set(args.set_name)
    source, known_bad = get_task("mmlu").default_source()
    questions = select_questions(
        load_questions(source, skip_bad_rows=known_bad), limit=args.questions, seed=0
    )
    prompts = [render_prompt(q) for q in questions.questions]
    factory = LlamaBackendFactory()
    base = factory.open(model_set.baseline)
    base_lp = full_logprobs(base, prompts)
    base.close()
    ks = [int(k) for k in args.ks.split(",")]
    wanted = args.quant or ["Q8_0", "Q2_K"]
    print(
        f"{len(prompts)} MMLU prompts, baseline {model_set.baseline.label}, vocabulary "
        f"{base_lp[0].size}"
    )
    print(
        f"{'quant':<10}{'K':>6}{'bytes/q':>9}{'exact KL':>11}{'mean |gap|':>12}{'max |gap|':>11}"
        f"{'mean rel':>10}{'mean tail':>11}"
    )
    for quant in model_set.quants:
        if not any(quant.label.startswith(w) for w in wanted):
            continue
        backend = factory.open(quant)
        quant_lp = full_logprobs(backend, prompts)
        backend.close()
        exact = np.array([kernels.kl_divergence(p, q) for p, q in zip(base_lp, quant_lp)])
        for k in ks:
            approx, tails = [], []
            for p, q in zip(base_lp, quant_lp):
                ids, top = kernels.top_k(p, k)
                tail = kernels.tail_log_mass(p, ids)
                approx.append(kernels.kl_from_top_k(ids, top, tail, q))
                tails.append(np.exp(tail))
            gap = exact - np.array(approx)
            print(
                f"{quant.label.split()[0]:<10}{k:>6}{8 * k:>9}{exact.mean():>11.5f}"
                f"{np.abs(gap).mean():>12.2e}"
                f"{np.abs(gap).max():>11.2e}"
                f"{(np.abs(gap) / np.maximum(exact, 1e-12)).mean():>10.2%}{np.mean(tails):>11.4f}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

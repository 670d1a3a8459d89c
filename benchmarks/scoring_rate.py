"""Rows per second of the scoring kernel on real logits rows, by thread count, and the rates a
GPU's decode speed asks of it.

    python benchmarks/scoring_rate.py --threads 1,2          # Gemma 3 270M F16 and Q8_0 rows

Decodes one 512-token chunk of text with the baseline and the quant (logits at the second half,
255 rows of the model's vocabulary), then times, in this process:

  * the baseline record (`baseline_normalize`: top K, tail mass, S tail draws, normalizer),
  * a quant's row (`normalize` against the baseline's top ids + `kl_rows`),
  * the naive float64 path for reference (`kernels.log_softmax` of both rows + exact KL),

each over 32-row blocks spread over T threads as `ggflip.runs.pipeline` spreads them, best of
`--repeat`. Then, for a decode speed (`--decode-tok-s`, default the lent H100's llama-bench pp512
on Gemma 3 270M, 67,153 tok/s), it prints the scoring rate each mode needs so that scoring hides
behind the decode: corpus mode scores 255 of every 512 tokens, letter multiple choice one row per
prompt (~125 tokens for 0-shot MMLU), cloze one row per continuation token.
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BLOCK = 32
MODELS = Path("~/.cache/ggflip/models/gemma-3-270m").expanduser()


def chunk_rows(model: Path, text: str, ctx: int, threads: int) -> np.ndarray:
    """The logits rows of the second half of the text's first chunk."""
    from ggflip.backends.base import ScoreRequest
    from ggflip.backends.llama import LlamaBackend
    from ggflip.config.models_toml import LlamaSettings

    backend = LlamaBackend(model, LlamaSettings(n_ctx=ctx, n_seq_max=1, n_threads=threads))
    try:
        tokens = tuple(backend.tokenize(text, add_bos=True)[:ctx])
        return backend.logits([ScoreRequest(tokens, tuple(range(ctx // 2, ctx - 1)))])[0]
    finally:
        backend.close()


def rate(work, blocks: list[slice], threads: int, repeat: int) -> float:  # type: ignore[no-untyped-def]
    """Rows per second of `work(block)` over every block on `threads` threads, best of `repeat`."""
    n_rows = sum(b.stop - b.start for b in blocks)
    best = float("inf")
    with ThreadPoolExecutor(threads) as pool:
        for _ in range(repeat):
            started = time.perf_counter()
            list(pool.map(work, blocks))
            best = min(best, time.perf_counter() - started)
    return n_rows / best


def main() -> None:
    from ggflip.scoring import kernels
    from ggflip.scoring.topk import baseline_normalize, kl_rows, normalize

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=Path, default=MODELS / "gemma-3-270m-F16.gguf")
    parser.add_argument("--quant", type=Path, default=MODELS / "gemma-3-270m-Q8_0.gguf")
    parser.add_argument("--text", type=Path, default=ROOT / "README.md")
    parser.add_argument("--threads", default="1,2", help="scoring thread counts to time")
    parser.add_argument("--decode-threads", type=int, default=2)
    parser.add_argument("--top-k", type=int, default=512)
    parser.add_argument("--tail-samples", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--decode-tok-s", type=float, default=67_153.0)
    parser.add_argument(
        "--cloze-rows-per-token",
        type=float,
        default=426 / 8114,
        help="scored rows per prompt token of the cloze task (default: benchmarks/throughput.py's)",
    )
    args = parser.parse_args()

    text = args.text.read_text()
    base = chunk_rows(args.baseline, text, 512, args.decode_threads)
    quant = chunk_rows(args.quant, text, 512, args.decode_threads)
    n_rows, n_vocab = base.shape
    blocks = [slice(i, min(n_rows, i + BLOCK)) for i in range(0, n_rows, BLOCK)]
    records = {
        b.start: baseline_normalize(
            base[b], args.top_k, args.tail_samples, np.random.default_rng(b.start)
        )[1]
        for b in blocks
    }

    def baseline_work(block: slice) -> None:
        baseline_normalize(base[block], args.top_k, args.tail_samples, np.random.default_rng(0))

    def quant_work(block: slice) -> None:
        record = records[block.start]
        kl_rows(record, normalize(quant[block], record.top_ids))

    def naive_work(block: slice) -> None:
        kernels.kl_divergence(kernels.log_softmax(base[block]), kernels.log_softmax(quant[block]))

    print(
        f"{n_rows} rows of {n_vocab} tokens ({args.baseline.name} vs {args.quant.name}), "
        f"K={args.top_k}, S={args.tail_samples}, blocks of {BLOCK} rows"
    )
    print(
        f"{'threads':>8} {'baseline rows/s':>16} {'quant rows/s':>13} {'naive float64 rows/s':>21}"
    )
    rates = {}
    for threads in (int(t) for t in args.threads.split(",")):
        rates[threads] = (
            rate(baseline_work, blocks, threads, args.repeat),
            rate(quant_work, blocks, threads, args.repeat),
            rate(naive_work, blocks, threads, args.repeat),
        )
        b, q, n = rates[threads]
        print(f"{threads:>8} {b:>16.0f} {q:>13.0f} {n:>21.0f}")
    decode = args.decode_tok_s
    needs = {
        "corpus (255 rows per 512 tokens), x1.0": decode * 255 / 512,
        "MMLU 0-shot (1 row per ~125 tokens), x0.9": 0.9 * decode / 125,
        f"cloze ({args.cloze_rows_per_token:.3f} rows per token), x0.5": 0.5
        * decode
        * args.cloze_rows_per_token,
    }
    one_thread = rates[min(rates)][1]
    print(f"at a decode of {decode:,.0f} tok/s, a quant pass's scoring must keep up with:")
    for what, rows_per_s in needs.items():
        print(
            f"  {what}: {rows_per_s:,.0f} rows/s = {rows_per_s / one_thread:.1f} threads at this "
            "machine's one-thread quant rate"
        )


if __name__ == "__main__":
    main()

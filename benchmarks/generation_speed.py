"""Generation speed: ggflip's batched greedy generation and teacher-forced pass against llama.cpp.

Prints, side by side, on one machine in one run (with the load average beside the timings):
  * ggflip batched generation (`LlamaBackend.generate`: B prompts together, one `llama_decode`
    per step for every live sequence), generated tokens per wall second;
  * llama-cpp-python's `create_completion`, the same prompts one at a time, greedy
    (temperature 0), the same number of new tokens;
  * llama.cpp's own `llama-bench -n N -p 0` (token generation of one sequence) and, when built,
    `llama-batched-bench -npl B` (B sequences together, its S_TG rate), both built from the
    llama-cpp-python sdist as `benchmarks/throughput.py` builds llama-bench;
  * the ratio line: ggflip's batched generation against llama-batched-bench at the same batch,
    prompt length (ggflip's mean) and new tokens, the prefill counted on both sides
    (B·N / (t_pp + t_tg) for llama.cpp), the two alternating `--rounds` times in one run;
    ggflip's models on the KV layout its engine picks for prompts without shared shots (a
    stream per sequence), and with `--unified-too` also on the unified cache it used before;
  * ggflip's teacher-forced pass (one prefill of prompt + generation with logits at every
    generated position, as the engine runs it for each turn) against `llama-bench -p 512`.

Model loading is excluded everywhere (llama-bench excludes it too), and each side first
generates one untimed token so the weights are paged in. A generation that meets an
end-of-generation token stops early, so rates count the tokens actually generated.

    python benchmarks/generation_speed.py \\
        --model ~/.cache/ggflip/models/gemma-3-270m/gemma-3-270m-F16.gguf --threads 2
    python benchmarks/generation_speed.py --model M.gguf --prompts 2 --new-tokens 8 \\
        --skip-llama-bench   # a quick check that every part runs
    GGFLIP_LLAMA_BENCH=/tmp/llama-build/bin/llama-bench python benchmarks/generation_speed.py \\
        --model F16.gguf --prompts 16 --batch 16 --ratio-only --rounds 2 --unified-too
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def _load() -> str:
    return Path("/proc/loadavg").read_text().split()[0] if Path("/proc/loadavg").exists() else "?"


def _prompts(n: int) -> list[str]:
    from ggflip.tasks.default_prompts import DEFAULT_PROMPTS, EMBEDDED_TEMPLATE

    texts = [EMBEDDED_TEMPLATE.format(prompt=q) for _, q, _ in DEFAULT_PROMPTS]
    return [texts[i % len(texts)] for i in range(n)]


def timed_generation(
    backend: Any, prompts: list[tuple[int, ...]], batch: int, new_tokens: int
) -> tuple[list[Any], float]:
    """ggflip's batched greedy generation of `prompts`, `batch` per `generate` call (prefill
    included), after one untimed token that pages the weights in: (generations, wall seconds)."""
    from ggflip.backends.base import GenerateRequest

    backend.generate([GenerateRequest(prompts[0], 1)])
    started = time.perf_counter()
    generations = []
    for first in range(0, len(prompts), batch):
        requests = [GenerateRequest(p, new_tokens) for p in prompts[first : first + batch]]
        generations += backend.generate(requests)
    return generations, time.perf_counter() - started


def _settings(args: argparse.Namespace, unified: bool) -> Any:
    """The llama settings of the benchmark's backend: the engine's KV layout for prompts without
    shared shots (a stream per sequence, `ggflip.generate.spec.kv_layout`), or the unified cache
    it used before."""
    from ggflip.config.models_toml import LlamaSettings

    return LlamaSettings(
        n_ctx=args.n_ctx,
        n_threads=args.threads,
        n_gpu_layers=args.n_gpu_layers,
        n_seq_max=args.batch if not unified else max(args.batch + 1, 2),
        kv_unified=unified,
    )


def alternating_ratio(args: argparse.Namespace) -> None:
    """ggflip's batched generation and llama-batched-bench at the same batch, prompt length and
    new tokens, alternating `--rounds` times; prints each round and the ratio lines."""
    from llama_tools import batched_bench
    from throughput import ensure_llama_bench

    from ggflip.backends.llama import LlamaBackend

    batched = ensure_llama_bench(args.llama_src).parent / "llama-batched-bench"
    layouts = [False, True] if args.unified_too else [False]
    backends = {u: LlamaBackend(args.model, _settings(args, u)) for u in layouts}
    prompts = [tuple(backends[False].tokenize(p, add_bos=True)) for p in _prompts(args.prompts)]
    length = round(sum(map(len, prompts)) / len(prompts))
    shape = (length, args.new_tokens, args.batch)
    ours: dict[bool, list[float]] = {u: [] for u in layouts}
    theirs: list[float] = []
    try:
        for round_ in range(args.rounds):
            for unified, backend in backends.items():
                generations, seconds = timed_generation(
                    backend, prompts, args.batch, args.new_tokens
                )
                ours[unified].append(sum(len(g.tokens) for g in generations) / seconds)
            line = batched_bench(batched, args.model, args.threads, args.n_gpu_layers, shape, 4096)
            if not line:
                raise SystemExit("llama-batched-bench printed no result line")
            theirs.append(line["pl"] * line["tg"] / line["t"])  # prefill counted: B·N / T
            shown = ", ".join(
                f"{'unified' if u else 'streams'} {r[-1]:.1f}" for u, r in ours.items()
            )
            print(f"round {round_ + 1}: ggflip {shown}; llama-batched-bench {theirs[-1]:.1f} "
                  f"(S_TG {line['speed_tg']:.1f}) tok/s; load {_load()}")  # fmt: skip
    finally:
        for backend in backends.values():
            backend.close()
    print(f"batch {args.batch}, prompts of ~{length} tokens, {args.new_tokens} new tokens, "
          f"{args.threads} threads, {args.rounds} rounds alternating, prefill counted on both "
          f"sides")  # fmt: skip
    for unified, rates in ours.items():
        name = "unified KV (as before)" if unified else "KV stream per sequence"
        ratio = sum(rates) / sum(theirs)
        print(f"RATIO ggflip generate ({name}) / llama-batched-bench: {ratio:.2f}x "
              f"(rounds {', '.join(f'{a / b:.2f}' for a, b in zip(rates, theirs))}); load "
              f"{_load()}")  # fmt: skip


def ggflip_rates(args: argparse.Namespace) -> dict[str, float]:
    """Batched generation and the teacher-forced pass through ggflip's llama.cpp backend."""
    from ggflip.backends.base import ScoreRequest
    from ggflip.backends.leases import collect
    from ggflip.backends.llama import LlamaBackend

    backend = LlamaBackend(args.model, _settings(args, unified=False))
    try:
        prompts = [tuple(backend.tokenize(p, add_bos=True)) for p in _prompts(args.prompts)]
        generations, gen_seconds = timed_generation(backend, prompts, args.batch, args.new_tokens)
        generated = sum(len(g.tokens) for g in generations)
        started = time.perf_counter()
        forced = 0
        for prompt, generation in zip(prompts, generations):
            positions = tuple(range(len(prompt) - 1, len(prompt) + len(generation.tokens) - 1))
            with collect() as leases:  # the rows' memory reused, as in the pipeline
                backend.logits([ScoreRequest(prompt + generation.tokens, positions)])
            leases.give_back()
            forced += len(prompt) + len(generation.tokens)
        forced_seconds = time.perf_counter() - started
    finally:
        backend.close()
    return {
        "generated": generated,
        "gen_tps": generated / gen_seconds,
        "forced_tokens": forced,
        "forced_tps": forced / forced_seconds,
    }


def completion_rate(args: argparse.Namespace) -> dict[str, float]:
    """llama-cpp-python's high-level `create_completion`, one prompt at a time, greedy."""
    from llama_cpp import Llama

    llm = Llama(
        model_path=str(args.model),
        n_ctx=args.n_ctx,
        n_threads=args.threads,
        n_gpu_layers=args.n_gpu_layers,
        verbose=False,
    )
    llm.create_completion(_prompts(1)[0], max_tokens=1, temperature=0.0)  # warm-up
    generated = 0
    started = time.perf_counter()
    for prompt in _prompts(args.prompts):
        out = llm.create_completion(prompt, max_tokens=args.new_tokens, temperature=0.0)
        generated += int(out["usage"]["completion_tokens"])  # type: ignore[index]
    seconds = time.perf_counter() - started
    return {"generated": generated, "tps": generated / seconds}


def llama_tools(args: argparse.Namespace) -> dict[str, float]:
    """llama-bench's tg (one sequence) and pp512, and llama-batched-bench's S_TG at B sequences."""
    from llama_tools import batched_bench, build_targets, llama_bench_pp512
    from throughput import ensure_llama_bench

    bench = ensure_llama_bench(args.llama_src)
    common = ["-m", str(args.model), "-t", str(args.threads), "-ngl", str(args.n_gpu_layers)]
    out = subprocess.run(
        [str(bench), *common, "-p", "0", "-n", str(args.new_tokens), "-r", "3", "-o", "json"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    rates = {
        "tg_tps": float(json.loads(out)[0]["avg_ts"]),
        "pp512_tps": llama_bench_pp512(bench, args.model, args.threads, args.n_gpu_layers),
    }
    batched = bench.parent / "llama-batched-bench"
    if not batched.exists():
        try:
            build_targets(bench.parent.parent, ["llama-batched-bench"])
        except subprocess.CalledProcessError:
            pass  # a llama-bench given by path, without a build folder: S_TG is left out
    if batched.exists():
        shape = (32, args.new_tokens, args.batch)
        ngl = args.n_gpu_layers
        line = batched_bench(batched, args.model, args.threads, ngl, shape, args.n_ctx)
        if line:
            rates["batched_tg_tps"] = float(line["speed_tg"])
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--n-gpu-layers", type=int, default=0)
    parser.add_argument("--n-ctx", type=int, default=2048)
    parser.add_argument("--prompts", type=int, default=16, help="prompts generated (default 16)")
    parser.add_argument("--batch", type=int, default=4, help="prompts per batch (default 4)")
    parser.add_argument("--new-tokens", type=int, default=128, help="new tokens (default 128)")
    parser.add_argument("--llama-src", type=Path, help="an unpacked llama-cpp-python sdist")
    parser.add_argument("--skip-llama-bench", action="store_true")
    parser.add_argument(
        "--ratio-only",
        action="store_true",
        help="only ggflip against llama-batched-bench, alternating (the ratio lines)",
    )
    parser.add_argument("--rounds", type=int, default=2, help="alternations of --ratio-only")
    parser.add_argument(
        "--unified-too", action="store_true", help="--ratio-only on the unified KV cache as well"
    )
    args = parser.parse_args()
    print(f"load average before: {_load()}", file=sys.stderr)
    if args.ratio_only:
        alternating_ratio(args)
        return
    ours = ggflip_rates(args)
    theirs = completion_rate(args)
    tools = {} if args.skip_llama_bench else llama_tools(args)
    print(f"model {args.model.name}, {args.threads} threads, {args.prompts} prompts, batch "
          f"{args.batch}, {args.new_tokens} new tokens; load average after: {_load()}")  # fmt: skip
    rows = [
        (f"ggflip generate (batch {args.batch})", ours["gen_tps"], ours["generated"]),
        ("llama-cpp-python create_completion", theirs["tps"], theirs["generated"]),
        ("llama-bench tg (1 sequence)", tools.get("tg_tps"), None),
        (f"llama-batched-bench S_TG ({args.batch})", tools.get("batched_tg_tps"), None),
        ("ggflip teacher-forced pass", ours["forced_tps"], ours["forced_tokens"]),
        ("llama-bench pp512", tools.get("pp512_tps"), None),
    ]
    print(f"{'':<40}{'tokens/s':>10}{'tokens':>9}")
    for name, rate, tokens in rows:
        shown = "–" if rate is None else f"{rate:.1f}"
        print(f"{name:<40}{shown:>10}{'' if tokens is None else tokens:>9}")
    print(f"ggflip generate / create_completion: {ours['gen_tps'] / theirs['tps']:.2f}x")
    for key, name in (("tg_tps", "llama-bench tg"), ("batched_tg_tps", "llama-batched-bench")):
        if key in tools:
            print(f"ggflip generate / {name}: {ours['gen_tps'] / tools[key]:.2f}x")
    if "pp512_tps" in tools:
        print(f"teacher-forced / llama-bench pp512: {ours['forced_tps'] / tools['pp512_tps']:.2f}x")


if __name__ == "__main__":
    main()

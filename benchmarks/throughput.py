"""Throughput: ggflip's forward passes against llama.cpp's own `llama-bench`, one model, one thread
count.

Prints, side by side, on one machine in one run:
  * llama-bench's prompt-processing rate (`-p 512 -n 0`), built from the llama.cpp sources
    vendored in the installed llama-cpp-python's sdist (downloaded with `pip download` and
    built with CMake into the cache when missing; `--llama-src DIR` uses an unpacked sdist);
  * ggflip scoring MMLU 0-shot (prompt tokens per wall second, full-vocabulary KL against the
    cached baseline included) and its ratio to llama-bench;
  * MMLU 5-shot with and without shared-prefix reuse, and the speed-up;
  * a cloze task (MMLU's prompt, each choice's text scored as a continuation: there is no
    HellaSwag offline) with and without
    sharing each question's context between its choices;
  * questions per second and the peak RSS of each measurement (each runs in its own process).

"Tokens" are always the full prompts' tokens, what a naive loop decodes; with prefix reuse
fewer are decoded, which shows as a higher effective rate. A measurement times a quant pass
(the model against itself, baseline read from the cache): tokenizing, decoding, log-softmax,
scoring and KL; model loading is excluded (llama-bench excludes it too).

    python benchmarks/throughput.py \\
        --model ~/.cache/ggflip/models/gemma-3-270m/gemma-3-270m-F16.gguf --threads 2
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import json
import os
import pstats
import resource
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from llama_tools import batched_bench, ensure_tools, llama_bench_pp512  # noqa: E402, F401


def _tool_dir() -> Path:
    from ggflip.config.models_toml import default_cache_dir

    return default_cache_dir() / "tools" / f"llama.cpp-{version('llama_cpp_python')}"


def ensure_llama_bench(llama_src: Path | None) -> Path:
    """Path of a llama-bench binary built from the sources llama-cpp-python vendors; build it if
    missing (`CMAKE_ARGS`, e.g. "-DGGML_CUDA=on", reach the build as they reach
    llama-cpp-python's)."""
    if os.environ.get("GGFLIP_LLAMA_BENCH"):
        return Path(os.environ["GGFLIP_LLAMA_BENCH"])
    bin_dir = ensure_tools(_tool_dir() / "build", ["llama-bench"], llama_src, _tool_dir() / "sdist")
    return bin_dir / "llama-bench"


def batched_pp(bench: Path, args: argparse.Namespace, prompt_tokens: int) -> float | None:
    """llama-batched-bench's prompt rate for `--batch` prompts of `prompt_tokens` tokens decoded
    together (flash attention off, as ggflip's default), when that tool is built beside
    llama-bench."""
    batched = bench.parent / "llama-batched-bench"
    if not batched.exists():
        return None
    shape = (prompt_tokens, 1, args.batch)
    line = batched_bench(batched, args.model, args.threads, args.n_gpu_layers, shape, 4096)
    return float(line["speed_pp"]) if line else None


MEASUREMENT_LABELS = {
    "MMLU 0-shot, unified KV": "0shot-unified",
    "MMLU 0-shot": "0shot",
    "MMLU 5-shot, prefix reuse": "5shot",
    "MMLU 5-shot, naive": "5shot-naive",
    "cloze, context shared": "cloze",
    "cloze, naive": "cloze-naive",
}
MEASUREMENTS = tuple(MEASUREMENT_LABELS.values())


def _task(kind: str):  # type: ignore[no-untyped-def]
    from ggflip.tasks.registry import get_task

    if kind == "cloze":
        # the letter prompt's context, each choice's text scored as its continuation
        return dataclasses.replace(get_task("mmlu"), mode="cloze", name="mmlu_cloze")
    return get_task("mmlu_5shot" if kind == "5shot" else "mmlu")


def child(config: dict) -> dict:
    """One measurement, in this process: baseline into a cache (untimed), then the timed quant
    pass."""
    from ggflip.backends.llama import LlamaBackend, LlamaBackendFactory
    from ggflip.choice.engine import run_comparison
    from ggflip.choice.events import RunFinished
    from ggflip.choice.requests import Prompts
    from ggflip.choice.spec import RunSpec
    from ggflip.config.models_toml import LlamaSettings, ModelSet, ModelSpec
    from ggflip.tasks.load import load_task_questions

    task = _task(config["kind"])
    questions, prompts = load_task_questions(task, limit=config["n"], subjects=config["subjects"])
    settings = LlamaSettings(
        n_ctx=config["n_ctx"],
        n_batch=2048,
        n_ubatch=512,
        n_threads=config["threads"],
        n_seq_max=config["n_seq_max"],
        n_gpu_layers=config["n_gpu_layers"],
    )
    model = Path(config["model"])
    tokenizer = LlamaBackend(model, dataclasses.replace(settings, n_ctx=512, n_seq_max=1))
    requests = [r for reqs in Prompts(tokenizer, questions, prompts, False).requests for r in reqs]
    n_tokens = sum(len(r.tokens) for r in requests)
    n_rows = sum(len(r.positions) for r in requests)
    tokenizer.close()
    base = ModelSpec("F16", model, settings)
    factory = LlamaBackendFactory()
    if config.get("unified"):
        # as before per-sequence KV streams: the unified cache, which only prefix sharing needs
        import ggflip.choice.engine

        ggflip.choice.engine.kv_layout = lambda spec: spec  # type: ignore[assignment]
    cache = Path(config["cache"])
    list(
        run_comparison(
            RunSpec(
                ModelSet("b", base, ()),
                questions,
                cache_dir=cache,
                prompts=prompts,
                batch_size=config["batch"],
            ),
            factory,
        )
    )
    spec = RunSpec(
        ModelSet("b", base, (ModelSpec("self", model, settings),)),
        questions,
        cache_dir=cache,
        prompts=prompts,
        batch_size=config["batch"],
        share_prefixes=config["share"],
        scoring_threads=config["scoring_threads"],
    )
    profiler = cProfile.Profile() if config.get("profile") else None
    started = time.perf_counter()
    if profiler:
        profiler.enable()
    report = next(e.report for e in run_comparison(spec, factory) if isinstance(e, RunFinished))
    if profiler:
        profiler.disable()
        pstats.Stats(profiler, stream=sys.stderr).sort_stats("cumulative").print_stats(18)
    wall = time.perf_counter() - started
    quant = report.quants[0]
    return {
        "n": len(questions.questions),
        "tokens": n_tokens,
        "rows": n_rows,
        "seconds": quant.seconds,
        "wall": wall,
        "kl_max": quant.kl_max,
        "flips": quant.flips,
        "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def measure(config: dict) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(config)],
        check=True,
        capture_output=True,
        text=True,
    )
    if config.get("profile"):
        sys.stderr.write(out.stderr)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--model",
        type=Path,
        default=Path("~/.cache/ggflip/models/gemma-3-270m/gemma-3-270m-F16.gguf").expanduser(),
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--n-gpu-layers", type=int, default=0)
    parser.add_argument("--n0", type=int, default=96, help="MMLU 0-shot questions")
    parser.add_argument(
        "--n5",
        type=int,
        default=32,
        help="MMLU 5-shot questions (one subject: shots shared, as in full MMLU)",
    )
    parser.add_argument("--ncloze", type=int, default=32, help="cloze questions")
    parser.add_argument(
        "--subject",
        default="high_school_geography",
        help="subject of the 5-shot and cloze questions",
    )
    parser.add_argument(
        "--batch",
        type=int,
        default=4,
        help="questions per llama.cpp call (and n_seq_max; default 4, as `ggflip run`)",
    )
    parser.add_argument(
        "--llama-src", type=Path, help="an unpacked llama-cpp-python sdist (skips the download)"
    )
    parser.add_argument("--skip-llama-bench", action="store_true")
    parser.add_argument(
        "--scoring-threads",
        type=int,
        help="ggflip's --scoring-threads for the timed passes (default: ggflip's own choice)",
    )
    parser.add_argument(
        "--profile", action="store_true", help="print a cProfile of the 0-shot pass on stderr"
    )
    parser.add_argument(
        "--only",
        help="comma-separated measurements to run (default all): " + ", ".join(MEASUREMENTS),
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return
    bench = None if args.skip_llama_bench else ensure_llama_bench(args.llama_src)

    def pp512() -> float | None:
        if bench is None:
            return None
        return llama_bench_pp512(bench, args.model, args.threads, args.n_gpu_layers)

    # pp512 is measured before the first measurement and after each one: a measurement's ratio is
    # to the mean of the two around it, since a shared machine's speed drifts within minutes
    references = [pp512()]
    rows = []
    with tempfile.TemporaryDirectory() as cache:
        common = {
            "model": str(args.model),
            "threads": args.threads,
            "n_gpu_layers": args.n_gpu_layers,
            "cache": cache,
            "batch": args.batch,
            "n_seq_max": args.batch,
            "scoring_threads": args.scoring_threads,
        }
        plan = [
            (
                "MMLU 0-shot, unified KV",
                {
                    "kind": "0shot",
                    "n": args.n0,
                    "subjects": [],
                    "share": True,
                    "n_ctx": 4096,
                    "unified": True,
                },
            ),
            (
                "MMLU 0-shot",
                {
                    "kind": "0shot",
                    "n": args.n0,
                    "subjects": [],
                    "share": True,
                    "n_ctx": 4096,
                    "profile": args.profile,
                },
            ),
            (
                "MMLU 5-shot, prefix reuse",
                {
                    "kind": "5shot",
                    "n": args.n5,
                    "subjects": [args.subject],
                    "share": True,
                    "n_ctx": 8192,
                },
            ),
            (
                "MMLU 5-shot, naive",
                {
                    "kind": "5shot",
                    "n": args.n5,
                    "subjects": [args.subject],
                    "share": False,
                    "n_ctx": 8192,
                },
            ),
            (
                "cloze, context shared",
                {
                    "kind": "cloze",
                    "n": args.ncloze,
                    "subjects": [args.subject],
                    "share": True,
                    "n_ctx": 4096,
                },
            ),
            (
                "cloze, naive",
                {
                    "kind": "cloze",
                    "n": args.ncloze,
                    "subjects": [args.subject],
                    "share": False,
                    "n_ctx": 4096,
                },
            ),
        ]
        chosen = set(MEASUREMENTS) if not args.only else set(args.only.split(","))
        if unknown := chosen - set(MEASUREMENTS):
            parser.error(f"--only: unknown {', '.join(sorted(unknown))}")
        for label, config in plan:
            if MEASUREMENT_LABELS[label] not in chosen:
                continue
            result = measure({**common, **config})
            references.append(pp512())
            before, after = references[-2], references[-1]
            result["pp512"] = (before + after) / 2 if before and after else None
            rows.append((label, result))
            print(f"  measured {label}: {result}", file=sys.stderr)
    print(
        f"model {args.model.name}, {args.threads} threads, llama-cpp-python "
        f"{version('llama_cpp_python')}"
    )
    print(
        f"{'measurement':<28}{'questions':>10}{'tokens':>9}{'rows':>7}{'seconds':>9}"
        f"{'tok/s':>9}{'q/s':>8}{'vs pp512':>10}{'peak RSS':>11}"
    )
    measured = [r for r in references if r]
    if measured:
        spread = f" (measured {len(measured)} times: {min(measured):.0f}-{max(measured):.0f})"
        print(
            f"{'llama-bench pp512':<28}{'':>10}{'512':>9}{'':>7}{'':>9}"
            f"{sum(measured) / len(measured):>9.0f}{'':>8}{'1.00':>10}{'':>11}{spread}"
        )
    for label, r in rows:
        rate = r["tokens"] / r["seconds"]
        ratio = f"{rate / r['pp512']:.2f}" if r["pp512"] else "-"
        print(
            f"{label:<28}{r['n']:>10}{r['tokens']:>9}{r['rows']:>7}{r['seconds']:>9.1f}"
            f"{rate:>9.0f}{r['n'] / r['seconds']:>8.2f}{ratio:>10}{r['rss_mib']:>8.0f} MiB"
        )
    by = dict(rows)
    for naive, shared, what in (
        ("MMLU 5-shot, naive", "MMLU 5-shot, prefix reuse", "5-shot speed-up from prefix reuse"),
        ("cloze, naive", "cloze, context shared", "cloze speed-up from context sharing"),
    ):
        if naive in by and shared in by:
            print(f"{what}: {by[naive]['seconds'] / by[shared]['seconds']:.2f}x")
    zero = by.get("MMLU 0-shot")
    if zero is None:
        return
    rate0 = zero["tokens"] / zero["seconds"]
    same_shape = batched_pp(bench, args, round(zero["tokens"] / zero["n"])) if bench else None
    if same_shape:
        print(
            f"llama-batched-bench, {args.batch} prompts of {round(zero['tokens'] / zero['n'])} "
            f"tokens per decode (0-shot's shape): {same_shape:.0f} tok/s; MMLU 0-shot at "
            f"{rate0 / same_shape:.2f}x of it"
        )
    unified = by.get("MMLU 0-shot, unified KV")
    if unified:
        before = unified["tokens"] / unified["seconds"]
        print(f"MMLU 0-shot, per-sequence KV streams / unified KV cache: {rate0 / before:.2f}x")
    if zero["pp512"]:
        print(
            f"RATIO MMLU 0-shot vs llama-bench pp512 (measured before and after it): "
            f"{rate0 / zero['pp512']:.2f}x (target >= 0.95); load average {_load()}"
        )
    if unified and unified["pp512"]:
        print(
            f"RATIO MMLU 0-shot, unified KV (as before) vs llama-bench pp512: "
            f"{unified['tokens'] / unified['seconds'] / unified['pp512']:.2f}x"
        )


def _load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


if __name__ == "__main__":
    main()

"""ggflip against llama.cpp's tools on a GPU in one command: build, models, ratios, one JSON file.

    bash benchmarks/gpu.sh                 # a fresh GPU machine with PyPI: about 10 minutes
    python benchmarks/gpu.py --cpu-smoke --llama-build /tmp/llama-build   # CPU, smallest sizes
    python benchmarks/gpu.py --cpu-full --budget-s 1800 --llama-build /tmp/llama-build
                                           # CPU: every ratio at sizes filling the budget

1. On a GPU (`nvidia-smi` answers), builds llama-cpp-python with CUDA into a venv and runs again
   there (`gpu_setup.py`); on a CPU it uses the installed llama-cpp-python and says the CUDA
   build was skipped.
2. llama-bench, llama-perplexity and llama-batched-bench from the same vendored sources
   (`--llama-build DIR` reuses a build; on a GPU they are built in llama-cpp-python's own build
   folder, so the CUDA kernels compile once).
3. The demo models (ggflip.demo: Gemma 3 270M F16 and `--quant`).
4. Measures, everything offloaded on a GPU (n_gpu_layers / -ngl 99), flash attention off on
   both sides (ggflip's default), each side alternating with its reference and the load
   average recorded: MMLU 0-shot, cloze and 5-shot (benchmarks/throughput.py's measurement,
   the model against itself) against llama-bench pp512 measured before and after each;
   corpus mode (`ggflip kld`, baseline then quant, one process) against llama-perplexity
   (`--kl-divergence-base`, then `--kl-divergence`; same text, chunks, threads, flash
   attention), benchmarks/kld_vs_llama_perplexity.py's runs; batched greedy generation against
   llama-batched-bench at the same batch, prompt length and new tokens, prefill counted on both
   sides (its generated tokens over t_pp + t_tg).
5. Writes one JSON file (`--out`; schema in gpu_plan.py and docs/gpu.md) and prints a table.

`--budget-s` (default 570) bounds the whole command: after the setup, the first pp512 sizes the
rest to the time left (gpu_plan.plan_sizes), the cuts are printed and recorded, and a stage the
clock can no longer afford is skipped and recorded as such.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import gpu_plan as plan  # noqa: E402
import gpu_setup as setup  # noqa: E402
from llama_tools import batched_bench, llama_bench_pp512, load_average  # noqa: E402

QUESTION_SUBJECT = "high_school_geography"  # 5-shot and cloze: one subject, as throughput.py


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--budget-s", type=float, default=570.0, help="the whole command's seconds (default 570)"
    )
    parser.add_argument(
        "--cpu-smoke", action="store_true", help="the smallest sizes (default on a CPU)"
    )
    parser.add_argument(
        "--cpu-full",
        action="store_true",
        help="on a CPU, sizes that fill --budget-s and the CPU targets (not the smoke run)",
    )
    parser.add_argument(
        "--out", type=Path, help="results JSON (default: $OUT/gpu.json or out/gpu/gpu.json)"
    )
    parser.add_argument(
        "--work", type=Path, default=ROOT / "out" / "gpu", help="builds, logs, corpus"
    )
    parser.add_argument(
        "--llama-build", type=Path, help="an existing llama.cpp build folder (or its bin/)"
    )
    parser.add_argument("--llama-src", type=Path, help="an unpacked llama-cpp-python sdist")
    parser.add_argument("--llama-cpp-version", default=setup.DEFAULT_LLAMA_CPP_VERSION)
    parser.add_argument("--venv", type=Path, default=ROOT / ".venv-gpu", help="the CUDA venv")
    parser.add_argument(
        "--no-build", action="store_true", help="use this Python's llama-cpp-python on a GPU too"
    )
    parser.add_argument(
        "--build-venv",
        action="store_true",
        help="build the venv without a GPU too (tests the setup)",
    )
    parser.add_argument(
        "--models-dir", type=Path, help="ggflip.demo's models folder (default: the cache's)"
    )
    parser.add_argument("--quant", default="Q8_0", help="the quant of the corpus comparison")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--n-gpu-layers", type=int, help="default 99 with a GPU, else 0")
    parser.add_argument("--batch", type=int, default=4, help="MMLU questions per llama.cpp call")
    parser.add_argument("--child-generate", help=argparse.SUPPRESS)
    return parser.parse_args(argv)  # fmt: skip


class Clock:
    """The command's budget, counted from its first start (the setup's re-exec included)."""

    def __init__(self, budget_s: float) -> None:
        self.started = float(os.environ.get("GGFLIP_GPU_BENCH_T0", time.time()))
        self.budget_s = budget_s

    def elapsed(self) -> float:
        return time.time() - self.started

    def left(self) -> float:
        return self.budget_s - self.elapsed()


def child_generate(config: dict) -> dict:
    """ggflip's side of the generation comparison, in this process: load (untimed), then the
    batch's prompts generated together, prefill included, on the KV layout the engine picks for
    prompts without shared shots (`ggflip.generate.spec.kv_layout`: a stream per sequence, each
    of its share of llama-batched-bench's `n_ctx`, as llama-batched-bench lays them out)."""
    from generation_speed import timed_generation

    from ggflip.backends.llama import LlamaBackend
    from ggflip.config.models_toml import LlamaSettings

    settings = LlamaSettings(
        n_ctx=config["n_ctx"] // config["batch"], n_threads=config["threads"],
        n_gpu_layers=config["n_gpu_layers"], n_seq_max=config["batch"], kv_unified=False,
    )  # fmt: skip
    backend = LlamaBackend(Path(config["model"]), settings)
    try:
        prompts = [tuple(p) for p in config["prompts"]]
        generations, seconds = timed_generation(backend, prompts, len(prompts), config["new"])
    finally:
        backend.close()
    generated = sum(len(g.tokens) for g in generations)
    early = sum(1 for g in generations if g.finish != "length")
    return {"generated": generated, "seconds": seconds, "stopped_early": early}


class Bench:
    """The measurements, sharing the tools, models, sizes and clock."""

    def __init__(self, args: argparse.Namespace, bin_dir: Path, models: dict, text: Path) -> None:
        self.args, self.bin_dir, self.models, self.text = args, bin_dir, models, text
        self.f16 = models["F16"]
        self.sizes = plan.SMOKE
        self.skipped: list[str] = []
        self.targets = plan.TARGETS if args.n_gpu_layers else plan.CPU_TARGETS

    def pp512(self) -> float:
        bench = self.bin_dir / "llama-bench"
        a = self.args
        return llama_bench_pp512(bench, self.f16, a.threads, a.n_gpu_layers, self.sizes.repetitions)

    def mmlu(self, name: str, kind: str, n: int, before: float) -> tuple[dict, float]:
        """One MMLU measurement between two pp512 runs; returns its entry and the pp512 after."""
        import throughput

        loads = [load_average()]
        with tempfile.TemporaryDirectory() as cache:
            result = throughput.measure({
                "model": str(self.f16), "threads": self.args.threads,
                "n_gpu_layers": self.args.n_gpu_layers, "cache": cache, "batch": self.args.batch,
                "n_seq_max": self.args.batch, "scoring_threads": None, "kind": kind, "n": n,
                "subjects": [] if kind == "0shot" else [QUESTION_SUBJECT], "share": True,
                "n_ctx": 8192 if kind == "5shot" else 4096,
            })  # fmt: skip
        after = self.pp512()
        loads.append(load_average())
        entry = plan.comparison(
            name, [result["tokens"] / result["seconds"]], [before, after], self.targets,
            questions=result["n"], tokens=result["tokens"], rows=result["rows"],
            seconds=result["seconds"], peak_rss_mib=result["rss_mib"], load_average=loads,
        )  # fmt: skip
        return entry, after

    def corpus(self) -> dict:
        """`ggflip kld` and llama-perplexity's two KL runs, alternating, `rounds` times."""
        import kld_vs_llama_perplexity as kld

        work = self.args.work / "corpus"
        work.mkdir(parents=True, exist_ok=True)
        toml = work / "models.toml"
        quant_path = self.models[self.args.quant]
        toml.write_text(
            f"[llama]\nn_threads = {self.args.threads}\nflash_attn = false\n"
            f"n_gpu_layers = {self.args.n_gpu_layers}\n[sets.bench]\n"
            f'baseline = {{ path = "{self.f16}", label = "F16" }}\n'
            f'quants = [ {{ path = "{quant_path}", label = "{self.args.quant}" }} ]\n'
        )
        ns = argparse.Namespace(
            models=toml, set_name="bench", reuse=False, ctx=plan.CTX, chunks=self.sizes.chunks,
            threads=self.args.threads, flash_attn="off", n_gpu_layers=self.args.n_gpu_layers,
        )  # fmt: skip
        ours, theirs, loads, rounds = [], [], [load_average()], []
        for index in range(self.sizes.rounds):
            folder = work / f"round{index}"
            folder.mkdir(exist_ok=True)
            mine = kld.run_ggflip(ns, toml, self.text, folder)
            loads.append(load_average())
            quants = {self.args.quant: self.models[self.args.quant]}
            llama = kld.run_llama(
                ns, self.bin_dir / "llama-perplexity", self.f16, quants, self.text, folder
            )
            loads.append(load_average())
            report = mine["report"]
            llama_values = llama["quants"][self.args.quant]["values"]
            tokens = 2 * report["n_chunks"] * report["ctx"]  # two passes / runs, both sides
            llama_wall = kld._llama_wall(llama)
            ours.append(tokens / mine["usage"]["wall_s"])
            theirs.append(tokens / llama_wall)
            rounds.append({
                "ggflip_wall_s": mine["usage"]["wall_s"], "llama_wall_s": llama_wall,
                "ggflip_passes": mine["passes"],
                "llama_ppl_only_s": llama["ppl_only_usage"]["wall_s"],
                "ggflip_kl_mean": report["quants"][0]["kl_mean"],
                "llama_kl_mean": (llama_values["kl_mean"] or [None])[0],
                "ggflip_record_bytes": mine["baseline_bytes"],
                "llama_record_bytes": llama["baseline_bytes"],
            })  # fmt: skip
        return plan.comparison(
            "corpus", ours, theirs, self.targets, chunks=report["n_chunks"], ctx=report["ctx"],
            quant=self.args.quant,
            tokens_per_side=tokens, rounds=rounds, load_average=loads,
        )  # fmt: skip

    def generation(self) -> dict:
        """ggflip's batched generation between llama-batched-bench runs of the same shape."""
        s = self.sizes
        n_ctx = -(-s.gen_batch * (s.gen_prompt + s.gen_tokens + 8) // 256) * 256
        shape = (s.gen_prompt, s.gen_tokens, s.gen_batch)
        batched = self.bin_dir / "llama-batched-bench"
        a = self.args

        def reference() -> dict:
            line = batched_bench(batched, self.f16, a.threads, a.n_gpu_layers, shape, n_ctx)
            if line is None:
                raise RuntimeError("llama-batched-bench printed no JSON line")
            return line

        config = {
            "model": str(self.f16), "n_ctx": n_ctx, "threads": a.threads,
            "n_gpu_layers": a.n_gpu_layers, "batch": s.gen_batch, "new": s.gen_tokens,
            "prompts": self.generation_prompts(),
        }  # fmt: skip
        lines, ours, loads = [reference()], [], [load_average()]
        for _ in range(s.rounds):
            out = subprocess.run(
                [sys.executable, __file__, "--child-generate", json.dumps(config)],
                check=True, capture_output=True, text=True,
            )  # fmt: skip
            ours.append(json.loads(out.stdout.strip().splitlines()[-1]))
            lines.append(reference())
            loads.append(load_average())
        return plan.comparison(
            "generation", [o["generated"] / o["seconds"] for o in ours],
            [s.gen_batch * s.gen_tokens / line["t"] for line in lines], self.targets,
            batch=s.gen_batch, prompt_tokens=s.gen_prompt, new_tokens=s.gen_tokens, ggflip=ours,
            llama_batched_bench=lines, load_average=loads,
        )  # fmt: skip

    def generation_prompts(self) -> list[list[int]]:
        """`gen_batch` prompts of exactly `gen_prompt` tokens: BOS, then consecutive windows of
        the corpus text (text continues; few sequences stop before their new tokens)."""
        from ggflip.backends.llama import LlamaBackend
        from ggflip.config.models_toml import LlamaSettings

        tokenizer = LlamaBackend(self.f16, LlamaSettings(n_ctx=512, n_seq_max=1))
        try:
            tokens = tokenizer.tokenize(self.text.read_text(encoding="utf-8"), add_bos=False)
            (bos,) = tokenizer.tokenize("", add_bos=True)
        finally:
            tokenizer.close()
        width = self.sizes.gen_prompt - 1
        return [[bos, *tokens[i * width : (i + 1) * width]] for i in range(self.sizes.gen_batch)]


def run_measurements(bench: Bench, clock: Clock, smoke: bool) -> tuple[dict, list[str]]:
    """Every measurement in order of importance, each only while the clock affords its estimate."""
    first = bench.pp512()
    sizes, cuts = plan.plan_sizes(clock.left() - 10, plan.Rates(first), smoke)
    bench.sizes = sizes
    for cut in cuts:
        setup._say(f"sizing: {cut}")
    costs = plan.estimate(sizes, plan.Rates(first))
    results: dict = {}
    reference = first

    def affordable(name: str) -> bool:
        if clock.left() >= costs[name]:
            return True
        results[name] = {"skipped": f"{clock.left():.0f} s left, estimated {costs[name]:.0f} s"}
        cuts.append(f"{name}: skipped ({results[name]['skipped']})")
        return False

    for name, kind, n in (("mmlu_0shot", "0shot", sizes.mmlu0), ("cloze", "cloze", sizes.cloze)):
        if affordable(name):
            results[name], reference = bench.mmlu(name, kind, n, reference)
            setup._say(f"{name}: {results[name]['ratio']:.2f}x pp512")
    for name, measure in (("corpus", bench.corpus), ("generation", bench.generation)):
        if affordable(name):
            results[name] = measure()
            setup._say(f"{name}: {results[name]['ratio']:.2f}x")
    if affordable("mmlu_5shot"):
        results["mmlu_5shot"], _ = bench.mmlu("mmlu_5shot", "5shot", sizes.mmlu5, bench.pp512())
    return results, cuts


def print_table(doc: dict) -> None:
    device = doc["device"]
    print(f"{device['name']} ({device['kind']}), "
          f"llama-cpp-python {doc['versions']['llama_cpp_python']}, "
          f"{doc['settings']['threads']} threads, -ngl {doc['settings']['n_gpu_layers']}, "
          f"flash attention off; {doc['wall_s']:.0f} s in all")  # fmt: skip
    print(f"{'measurement':<12}{'ggflip tok/s':>14}{'reference tok/s':>17}{'ratio':>7}{'target':>8}"
          f"  {'load':<12} reference")  # fmt: skip
    for name, entry in doc["measurements"].items():
        if "skipped" in entry:
            print(f"{name:<12} skipped: {entry['skipped']}")
            continue
        target = "-" if entry["target"] is None else f">={entry['target']:.2f}"
        loads = [f"{x:.1f}" for x in entry["load_average"] if x is not None]
        load = f"{loads[0]}-{loads[-1]}" if loads else "?"
        print(f"{name:<12}{entry['ggflip_tps']:>14.0f}{entry['reference_tps']:>17.0f}"
              f"{entry['ratio']:>7.2f}{target:>8}  {load:<12} {entry['reference']}")  # fmt: skip
    for cut in doc["cuts"]:
        print(f"cut: {cut}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child_generate:
        print(json.dumps(child_generate(json.loads(args.child_generate))))
        return 0
    clock = Clock(args.budget_s)
    os.environ.setdefault("GGFLIP_GPU_BENCH_T0", str(clock.started))
    gpu = setup.gpu_info()
    args.work.mkdir(parents=True, exist_ok=True)
    if setup.REEXEC_MARK in os.environ:
        build = json.loads(os.environ[setup.REEXEC_MARK])
    elif (gpu and not args.no_build) or args.build_venv:
        if gpu:
            setup.check_cuda_toolkit()
        src = args.llama_src.resolve() if args.llama_src else None
        build = setup.build_venv(
            args.venv.resolve(), args.work.resolve(), src, args.llama_cpp_version, gpu is not None
        )
        setup.reexec_in(args.venv.resolve(), build)
    else:
        why = "--no-build" if gpu else "no GPU (nvidia-smi does not answer)"
        build = {"llama_cpp_python": f"CUDA build skipped: {why}; the installed one is used"}
    setup._say(build["llama_cpp_python"])
    if importlib.util.find_spec("llama_cpp") is None:
        sys.exit(
            f"gpu.py: error: {sys.executable} has no llama-cpp-python; run it with the Python of "
            "ggflip's venv (PYTHON=.venv/bin/python, made by scripts/bootstrap.sh)"
        )
    args.n_gpu_layers = args.n_gpu_layers if args.n_gpu_layers is not None else (99 if gpu else 0)
    timings = {"setup_s": clock.elapsed()}
    bin_dir = None
    if args.llama_build is None and build.get("build_dir"):
        bin_dir = setup.tools_in_venv_build(build, args.venv.resolve())
    bin_dir = bin_dir or setup.ensure_bench_tools(
        args.llama_build, args.work, args.llama_src, gpu is not None and args.llama_build is None
    )
    timings["tools_s"] = clock.elapsed() - sum(timings.values())
    models = setup.demo_models(args.models_dir, args.quant)
    import kld_vs_llama_perplexity as kld

    text = kld.mmlu_corpus(args.work / "mmlu_corpus.txt")
    timings["models_s"] = clock.elapsed() - sum(timings.values())
    bench = Bench(args, bin_dir, models, text)
    smoke = args.cpu_smoke or (gpu is None and not args.cpu_full)
    measurements, cuts = run_measurements(bench, clock, smoke)
    timings["measure_s"] = clock.elapsed() - sum(timings.values())
    started = datetime.fromtimestamp(clock.started, timezone.utc)
    doc = {
        "schema": plan.SCHEMA,
        "started_utc": started.isoformat(timespec="seconds"),
        "wall_s": clock.elapsed(),
        "device": setup.device_record(gpu),
        "build": {**build, "tools": setup.tools_record(bin_dir)},
        "versions": setup.versions(),
        "settings": {
            "threads": args.threads, "n_gpu_layers": args.n_gpu_layers, "flash_attn": False,
            "mmlu_batch": args.batch, "budget_s": args.budget_s,
            "smoke": bench.sizes == plan.SMOKE, "corpus_text": str(text),
            "models": {k: str(v) for k, v in models.items()},
        },
        "sizes": plan.dataclasses.asdict(bench.sizes),
        "cuts": cuts,
        "timings_s": timings,
        "measurements": measurements,
    }  # fmt: skip
    problems = plan.check_document(doc)
    if problems:
        sys.exit(f"gpu.py: error: the results document is malformed: {'; '.join(problems)}")
    out = args.out or Path(os.environ.get("OUT") or ROOT / "out" / "gpu") / "gpu.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    from ggflip.store.atomic import atomic_output

    with atomic_output(out) as tmp:
        tmp.write_text(json.dumps(doc, indent=1) + "\n")
    print_table(doc)
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

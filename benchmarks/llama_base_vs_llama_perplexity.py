"""`ggflip kld --llama-base` against llama-perplexity's own `--kl-divergence` on the same base file.

    python benchmarks/llama_base_vs_llama_perplexity.py \\
        [--models-dir ~/.cache/ggflip/models/gemma-3-270m] [--text /usr/share/common-licenses/GPL-3]
        [--quants Q8_0,Q2_K] [--chunks 4] [--ctx 512]

Reuses `--llama-perplexity` (default /tmp/llama-build/bin/llama-perplexity) or builds it from the
llama-cpp-python sdist as benchmarks/kld_vs_llama_perplexity.py does. Then, each in its own
process timed with os.wait4 (wall time, peak RSS):

1. llama-perplexity on the F16 with `--kl-divergence-base FILE` (the base file);
2. llama-perplexity `--kl-divergence` with each quant against that file;
3. `ggflip baseline import FILE` alone (the conversion's memory);
4. `ggflip kld --llama-base FILE --quant ...` with a fresh cache (import, then every quant);
5. unless `--no-f16`, `ggflip kld` with the F16 itself as baseline on the same text and chunks
   (ggflip's own record, no 16-nat window), for a third opinion.

Prints mean KL and same-top ±SE per quant and tool, whether ggflip's number is within one of
llama-perplexity's standard errors, and the peak RSS of each ggflip process against the base
file's size.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from kld_vs_llama_perplexity import LLAMA_LINES, llama_perplexity_binary, timed  # noqa: E402


def llama_numbers(log: Path) -> dict[str, list[float] | None]:
    """The statistics of a `--kl-divergence` run's log (mean KL, same top, PPLs ...)."""
    text = log.read_text(errors="replace")
    values: dict[str, list[float] | None] = {}
    for key, pattern in LLAMA_LINES.items():
        match = re.search(pattern, text)
        values[key] = [float(g) for g in match.groups()] if match else None
    return values


def ggflip(args: list[str], work: Path, name: str) -> tuple[dict, dict[str, float]]:
    """Run `ggflip ARGS --json` in a child process: (its report, its wait4 usage)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = work / f"{name}.json"
    cmd = [sys.executable, "-m", "ggflip.cli.main", *args]
    usage = timed(cmd, work / f"{name}.log", env, stdout=out)
    text = out.read_text()
    return (json.loads(text) if text.strip().startswith("{") else {}), usage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--models-dir", type=Path, default=Path.home() / ".cache/ggflip/models/gemma-3-270m"
    )
    parser.add_argument("--prefix", default="gemma-3-270m-", help="model file names' prefix")
    parser.add_argument("--text", type=Path, default=Path("/usr/share/common-licenses/GPL-3"))
    parser.add_argument("--quants", default="Q8_0,Q2_K")
    parser.add_argument("--chunks", type=int, default=4)
    parser.add_argument("--ctx", type=int, default=512)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument(
        "--llama-perplexity", type=Path, default=Path("/tmp/llama-build/bin/llama-perplexity")
    )
    parser.add_argument("--work", type=Path, default=Path("/tmp/ggflip-llama-base-bench"))
    parser.add_argument("--no-f16", action="store_true", help="skip ggflip's own F16 run")
    args = parser.parse_args()

    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    binary = args.llama_perplexity
    if not binary.exists():
        binary = llama_perplexity_binary(work / "llama-tools", None)
    f16 = args.models_dir / f"{args.prefix}F16.gguf"
    quants = {q: args.models_dir / f"{args.prefix}{q}.gguf" for q in args.quants.split(",")}
    common = ["-c", str(args.ctx), "-t", str(args.threads), "-fa", "off"]
    base = work / "f16.kld"
    base_usage = timed(
        [str(binary), "-m", str(f16), "-f", str(args.text), "--chunks", str(args.chunks),
         "--kl-divergence-base", str(base), *common],
        work / "llama-base.log",
    )  # fmt: skip
    theirs = {}
    for label, path in quants.items():
        log = work / f"llama-{label}.log"
        timed(
            [str(binary), "-m", str(path), "--kl-divergence-base", str(base), "--kl-divergence",
             *common],
            log,
        )  # fmt: skip
        theirs[label] = llama_numbers(log)

    cache = work / "cache"
    pack = work / "f16.pack"
    shutil.rmtree(cache, ignore_errors=True)  # a fresh cache: the run imports the file
    pack.unlink(missing_ok=True)
    first = str(next(iter(quants.values())))
    _, import_usage = ggflip(
        ["baseline", "import", str(base), "--model", first, "-o", str(pack)], work, "import"
    )
    quant_flags = [flag for path in quants.values() for flag in ("--quant", str(path))]
    ours, ours_usage = ggflip(
        ["kld", "--llama-base", str(base), *quant_flags, "--cache-dir", str(cache), "--json"],
        work,
        "ggflip-llama-base",
    )
    own: dict = {}
    own_usage: dict[str, float] = {}
    if not args.no_f16:
        models = work / "models.toml"
        lines = [
            "[llama]",
            f"n_threads = {args.threads}",
            "[sets.bench]",
            f'baseline = {{ path = "{f16}", label = "F16" }}',
            "quants = [",
            *(f'  {{ path = "{path}", label = "{label}" }},' for label, path in quants.items()),
            "]",
        ]
        models.write_text("\n".join(lines) + "\n")
        own, own_usage = ggflip(
            ["kld", "--models", str(models), "--text", str(args.text), "--ctx", str(args.ctx),
             "--chunks", str(args.chunks), "--no-cache", "--json"],
            work,
            "ggflip-f16",
        )  # fmt: skip
    usage = {"base": base_usage, "ours": ours_usage, "import": import_usage, "own": own_usage}
    report(args, base, theirs, ours, own, usage, pack)


def report(
    args: argparse.Namespace,
    base: Path,
    theirs: dict,
    ours: dict,
    own: dict,
    usage: dict[str, dict[str, float]],
    pack: Path,
) -> None:
    """The comparison table and the memory lines (`usage`: each process's wait4 numbers)."""
    size_mib = base.stat().st_size / 2**20
    print(
        f"base file: {base.stat().st_size:,} bytes ({size_mib:.0f} MiB), "
        f"{ours.get('n_chunks', '?')} chunks x {args.ctx} of {args.text}; "
        f"{ours.get('tokens_scored', '?')} scored tokens"
    )
    print(f"{'quant':6} {'tool':22} {'mean KL':>22} {'same top %':>17}  within 1 SE of llama")
    own_quants = {q["label"]: q for q in own.get("quants", [])}
    for quant in ours.get("quants", []):
        label = quant["label"].removeprefix(args.prefix)
        values = theirs.get(label, {})
        kl, top = values.get("kl_mean"), values.get("same_top")
        if kl and top:
            print(
                f"{label:6} {'llama-perplexity':22} {kl[0]:.6f} ± {kl[1]:.6f}   "
                f"{top[0]:7.3f} ± {top[1]:.3f}"
            )
        rows = [("ggflip --llama-base", quant)]
        if label in own_quants:
            rows.append(("ggflip (F16 baseline)", own_quants[label]))
        for tool, q in rows:
            agree = ""
            if kl and top:
                kl_ok = abs(q["kl_mean"] - kl[0]) <= kl[1]
                top_ok = abs(100 * q["same_top"] - top[0]) <= top[1]
                agree = f"KL {'yes' if kl_ok else 'NO'}, same top {'yes' if top_ok else 'NO'}"
            print(
                f"{'':6} {tool:22} {q['kl_mean']:.6f} ± {q['kl_mean_unc']:.6f}   "
                f"{100 * q['same_top']:7.3f} ± {100 * q['same_top_unc']:.3f}  {agree}"
            )
    ours_usage, import_usage, own_usage = usage["ours"], usage["import"], usage["own"]
    print(
        f"peak RSS: ggflip kld --llama-base {ours_usage['peak_mib']:.0f} MiB (import, then "
        f"{len(ours.get('quants', []))} quants loaded one at a time; "
        f"{ours_usage['wall_s']:.0f} s), ggflip baseline import alone "
        f"{import_usage['peak_mib']:.0f} MiB ({import_usage['wall_s']:.0f} s); base file "
        f"{size_mib:.0f} MiB; llama-perplexity writing it {usage['base']['peak_mib']:.0f} MiB"
    )
    if own_usage:
        print(
            f"peak RSS of ggflip kld with the F16 as baseline: {own_usage['peak_mib']:.0f} MiB "
            f"({own_usage['wall_s']:.0f} s)"
        )
    if pack.exists():
        print(
            f"pack: {pack.stat().st_size:,} bytes "
            f"({base.stat().st_size / pack.stat().st_size:.0f}x smaller than the base file)"
        )


if __name__ == "__main__":
    main()

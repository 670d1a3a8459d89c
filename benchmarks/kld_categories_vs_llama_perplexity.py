"""Corpus categories: one `ggflip kld --text A --text B` run against llama-perplexity run on each
file alone.

    python benchmarks/kld_categories_vs_llama_perplexity.py --quants Q8_0,Q2_K --chunks 4

ggflip chunks every text on its own, so each category's statistics should be those of
`llama-perplexity -f that-file --kl-divergence` run on the file alone. This script runs ggflip
once over all the texts, then llama-perplexity (built as in `kld_vs_llama_perplexity.py`) once
per file for the baseline and once per file and quant, and prints each category's PPL, mean KL
and same-top side by side with the difference in combined standard errors (z).

Default texts, two kinds of text every machine with Python has: English prose (the GPL-3 text of
Debian's common-licenses when present, else ggflip's README.md) and Python code (the standard
library's argparse.py).
"""

from __future__ import annotations

import argparse
import argparse as argparse_module
import json
import math
import os
import shutil
import sys
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from kld_vs_llama_perplexity import (  # noqa: E402
    llama_perplexity_binary,
    run_llama,
    text_lines,
    timed,
)

from ggflip.config.models_toml import default_cache_dir, load_models_toml  # noqa: E402


def default_texts() -> list[Path]:
    prose = Path("/usr/share/common-licenses/GPL-3")
    return [prose if prose.exists() else ROOT / "README.md", Path(argparse_module.__file__)]


def write_models(args: argparse.Namespace, work: Path) -> tuple[Path, Path, dict[str, Path]]:
    """A models.toml of the baseline and the chosen quants; returns (file, baseline, quants)."""
    full = load_models_toml(args.models).get_set(args.set_name)
    wanted = [w.strip() for w in args.quants.split(",")]
    quants = tuple(q for w in wanted for q in full.quants if q.label.split()[0] == w)
    if not quants:
        sys.exit(f"no quant of set {args.set_name} is labelled {args.quants}")
    model_set = replace(full, name="bench", quants=quants)
    lines = [
        "[llama]",
        f"n_threads = {args.threads}",
        "[sets.bench]",
        f'baseline = {{ path = "{model_set.baseline.path}", label = "F16" }}',
        "quants = [",
    ]
    lines += [f'  {{ path = "{q.path}", label = "{q.label.split()[0]}" }},' for q in quants] + ["]"]
    path = work / "models.toml"
    path.write_text("\n".join(lines) + "\n")
    return path, model_set.baseline.path, {q.label.split()[0]: q.path for q in quants}


def run_ggflip(args: argparse.Namespace, models_toml: Path, texts: list[Path], work: Path) -> dict:
    cache = work / "ggflip-cache"
    shutil.rmtree(cache, ignore_errors=True)
    cmd = [sys.executable, "-m", "ggflip.cli.main", "kld", "--models", str(models_toml)]
    for text in texts:
        cmd += ["--text", str(text)]
    cmd += ["--ctx", str(args.ctx), "--chunks", str(args.chunks), "--json"]
    cmd += ["--cache-dir", str(cache)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = work / "ggflip.out.json"
    usage = timed(cmd, work / "ggflip.log", env, stdout=out)
    return {"usage": usage, "report": json.loads(out.read_text())}


def z(a: float, ua: float, b: float, ub: float) -> float:
    """|a - b| in combined standard errors (the two runs' errors are nearly the same tokens', so
    this overstates the agreement a little; it is a yardstick, not a test)."""
    spread = math.hypot(ua, ub)
    return abs(a - b) / spread if spread > 0 else (0.0 if a == b else math.inf)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, default=ROOT / "models.toml")
    parser.add_argument("--set", dest="set_name", default="gemma-270m")
    parser.add_argument("--quants", default="Q8_0,Q2_K", help="labels (prefix match)")
    parser.add_argument("--text", type=Path, action="append", help="a category (repeatable)")
    parser.add_argument("--ctx", type=int, default=512)
    parser.add_argument("--chunks", type=int, default=4)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--llama-src", type=Path, help="unpacked sdist or llama.cpp tree")
    parser.add_argument("--tools", type=Path, help="where llama-perplexity is built")
    parser.add_argument("--work", type=Path, default=Path("benchmarks/out/kld-categories"))
    args = parser.parse_args()
    args.reuse, args.only = False, None  # run_llama's stage flags: always run here

    import llama_cpp

    texts = args.text or default_texts()
    names = [t.name for t in texts]
    if len(set(names)) != len(names):
        sys.exit("give texts with different file names (a category is named by its file)")
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    models_toml, baseline, quants = write_models(args, work)
    tools = args.tools or default_cache_dir() / "llama-tools" / llama_cpp.__version__
    binary = llama_perplexity_binary(tools, args.llama_src)

    ours = run_ggflip(args, models_toml, texts, work)
    theirs = {}
    for text in texts:
        folder = work / f"llama-{text.name}"
        folder.mkdir(exist_ok=True)
        theirs[text.name] = run_llama(args, binary, baseline, quants, text, folder)
        # llama-perplexity prints the baseline's PPL only in its --kl-divergence-base log.
        log = (folder / "llama-base.log").read_text(errors="replace")
        final = [line for line in log.splitlines() if "Final estimate: PPL" in line]
        ppl, unc = final[-1].split("PPL = ")[1].split(" +/- ")
        theirs[text.name]["ppl_base"] = [float(ppl), float(unc)]

    report = ours["report"]
    print(f"ggflip kld over {', '.join(names)}: --ctx {args.ctx} --chunks {args.chunks}")
    for name in names:  # what each side read of each text: sha256, tokens, chunks
        mine = next(t for t in report["texts"] if t["name"] == name)
        single = {"report": {**mine, "ctx": report["ctx"]}}
        print("\n".join(f"{name}: {line}" for line in text_lines(single, theirs[name])))
    base_rows = {row["name"]: row for row in report["baseline"]["by_category"]}
    print(f"{'text':16} {'model':6} {'ggflip':>22} {'llama-perplexity':>22} {'z':>5}  metric")
    for name in names:
        mine, lp = base_rows[name], theirs[name]["ppl_base"]
        zz = z(mine["ppl"], mine["ppl_unc"], *lp)
        print(
            f"{name:16} {'F16':6} {mine['ppl']:12.4f} ± {mine['ppl_unc']:7.4f} "
            f"{lp[0]:12.4f} ± {lp[1]:7.4f} {zz:5.2f}  PPL"
        )
    for quant in report["quants"]:
        by_name = {row["name"]: row for row in quant["by_category"]}
        for name in names:
            mine = by_name[name]
            values = theirs[name]["quants"][quant["label"]]["values"]
            rows = [
                ("PPL(Q)", mine["ppl"], mine["ppl_unc"], *values["ppl_q"]),
                ("KL mean", mine["kl_mean"], mine["kl_mean_unc"], *values["kl_mean"]),
                (
                    "same top %",
                    100 * mine["same_top"],
                    100 * mine["same_top_unc"],
                    *values["same_top"],
                ),
            ]
            for metric, a, ua, b, ub in rows:
                print(
                    f"{name:16} {quant['label']:6} {a:12.6f} ± {ua:7.6f} {b:12.6f} ± {ub:7.6f} "
                    f"{z(a, ua, b, ub):5.2f}  {metric}"
                )
    llama_wall = sum(
        t["base_usage"]["wall_s"] + sum(q["usage"]["wall_s"] for q in t["quants"].values())
        for t in theirs.values()
    )
    print(
        f"wall time: ggflip {ours['usage']['wall_s']:.0f} s (one process, every text), "
        f"llama-perplexity {llama_wall:.0f} s ({len(texts) * (1 + len(quants))} runs); "
        f"load average at the end {os.getloadavg()[0]:.1f}"
    )
    (work / "summary.json").write_text(json.dumps({"ggflip": ours, "llama": theirs}, indent=1))


if __name__ == "__main__":
    main()

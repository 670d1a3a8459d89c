"""`ggflip baseline export|verify|info`: baseline packs from the command line (`ggflip.packs`).

`export --out PACK run|kld FLAGS...` runs the baseline of the command that follows (the flags of
that `run` or `kld`, quants ignored: only the baseline is scored, or read from the cache) and
writes its pack; `verify` checks every checksum; `info` describes a pack. Owns no pack logic.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ggflip.cli.consoles import console
from ggflip.cli.progress import follow_run
from ggflip.errors import ExitCode, UsageError
from ggflip.packs.archive import Pack

INFO_SCHEMA = "ggflip.baseline-info/1"


def add_baseline_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register `ggflip baseline` and its three subcommands."""
    baseline = subparsers.add_parser(
        "baseline", help="baseline packs: export a run's baseline as one file, verify, describe"
    )
    commands = baseline.add_subparsers(dest="baseline_command", required=True)
    export = commands.add_parser(
        "export",
        help="score (or read from the cache) the baseline of a run or kld command and write it "
        "as a pack: ggflip baseline export --out PACK run|kld FLAGS...",
    )
    export.add_argument("--out", "-o", type=Path, required=True, help="the pack file to write")
    export.add_argument(
        "command_line",
        nargs=argparse.REMAINDER,
        metavar="run|kld FLAGS",
        help="the command whose baseline to export, with its flags (its quants are ignored)",
    )
    _add_import_parser(commands)
    for name, what in (("verify", "check every checksum of"), ("info", "describe")):
        sub = commands.add_parser(name, help=f"{what} a baseline pack")
        sub.add_argument("pack", help="the pack: a path or hf://OWNER/REPO/FILE")
        sub.add_argument("--json", action="store_true", help="write one JSON document on stdout")


def _add_import_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """`ggflip baseline import FILE --model GGUF --out PACK`."""
    from ggflip.corpus.spec import DEFAULT_CORPUS_TOP_K, DEFAULT_TAIL_SAMPLES

    imported = commands.add_parser(
        "import",
        help="convert a llama-perplexity --kl-divergence-base file into a corpus baseline pack "
        "(use it with ggflip kld --baseline-pack, or kld --llama-base FILE)",
    )
    imported.add_argument("file", type=Path, help="the --kl-divergence-base file")
    imported.add_argument(
        "--model",
        type=Path,
        required=True,
        metavar="GGUF",
        help="a GGUF of the model that wrote the file (a quant will do): its vocabulary and BOS",
    )
    imported.add_argument("--out", "-o", type=Path, required=True, help="the pack file to write")
    imported.add_argument(
        "--top-k",
        type=int,
        default=DEFAULT_CORPUS_TOP_K,
        help=f"baseline tokens kept per scored token (default: {DEFAULT_CORPUS_TOP_K})",
    )
    imported.add_argument(
        "--tail-samples",
        type=int,
        default=DEFAULT_TAIL_SAMPLES,
        help=f"tail draws kept per scored token (default: {DEFAULT_TAIL_SAMPLES})",
    )


def _import(args: argparse.Namespace) -> int:
    """Convert a llama-perplexity base file into a pack, a chunk at a time."""
    from ggflip.errors import check_counts
    from ggflip.packs.llama_base import import_llama_base

    check_counts({"--top-k": args.top_k}, {"--tail-samples": args.tail_samples})
    shape = (args.top_k, args.tail_samples)
    progress = import_progress(args.file)
    return _finish(import_llama_base(args.file, args.model, args.out, shape, progress))


def import_progress(path: Path) -> Callable[[int, int], None]:
    """A line on stderr at every tenth of a llama base file's import (and its last chunk)."""
    stderr = console(stderr=True)

    def progress(done: int, total: int) -> None:
        if done == total or done % max(1, total // 10) == 0:
            stderr.print(f"importing {path.name}: chunk {done}/{total}", style="dim", markup=False)

    return progress


def settle_task(args: argparse.Namespace) -> None:
    """`run`'s task: as given (`args.task_given`), else the `--baseline-pack`'s, else mmlu."""
    from ggflip.packs.baseline import open_pack_ref

    args.task_given = args.task is not None
    if args.task is None and args.baseline_pack:
        args.task = open_pack_ref(args.baseline_pack, verify=False).manifest.get("task")
    args.task = args.task or "mmlu"


def baseline_command(
    args: argparse.Namespace, parse: Callable[[Sequence[str]], argparse.Namespace]
) -> int:
    """Run `ggflip baseline ...`; `parse` parses the command line `export` exports."""
    from ggflip.packs.baseline import open_pack_ref

    if args.baseline_command == "export":
        return _export(args, parse)
    if args.baseline_command == "import":
        return _import(args)
    pack = open_pack_ref(args.pack, verify=args.baseline_command == "verify")
    facts = pack_facts(pack)
    if args.baseline_command == "verify":
        facts = {"schema": "ggflip.baseline-verify/1", "intact": True, **facts}
    if args.json:
        sys.stdout.write(json.dumps(facts, indent=1) + "\n")
    else:
        _print_facts(facts, intact=args.baseline_command == "verify")
    return int(ExitCode.OK)


def pack_facts(pack: Pack) -> dict[str, Any]:
    """What `baseline info` says about a pack, as JSON."""
    from ggflip.corpus.cache import llama_cpp_bytes_per_token

    manifest = pack.manifest
    base, counts = manifest["baseline"], manifest["counts"]
    positions = int(counts["scored_positions"])
    n_vocab = int(base["probe"]["n_vocab"])
    per_position = pack.size / max(positions, 1)
    llama = llama_cpp_bytes_per_token(n_vocab)
    return {
        "schema": INFO_SCHEMA,
        "path": str(pack.path),
        "mode": pack.mode,
        "task": manifest.get("task"),
        "ggflip_version": manifest["ggflip_version"],
        "set": manifest["set"],
        "baseline": {name: base[name] for name in ("label", "file", "size", "sha256")},
        "tokenizer_digest": base["tokenizer_digest"],
        "chat_template_digest": base["chat_template_digest"],
        "numerics": base["numerics"],
        "counts": counts,
        "files": len(manifest["files"]),
        "size": pack.size,
        "bytes_per_scored_position": round(per_position, 1),
        "llama_cpp_bytes_per_position": llama,
        "size_ratio_to_llama_cpp": round(llama / per_position, 1),
    }


def _print_facts(facts: dict[str, Any], intact: bool) -> None:
    from ggflip.packs.baseline import MODE_WORDS

    base = facts["baseline"]
    size = f"{base['size']:,} bytes" if base["size"] is not None else "size unknown"
    counts = ", ".join(
        f"{name.replace('_', ' ')} {value:,}"
        for name, value in facts["counts"].items()
        if name != "bytes_per_position"
    )
    lines = [
        f"{facts['path']}: {'intact, ' if intact else ''}a "
        f"{MODE_WORDS.get(facts['mode'], facts['mode'])} baseline pack"
        + (f" of {facts['task']}" if facts["task"] else ""),
        f"baseline: {base['label']} ({base['file']}, {size}, sha256 {base['sha256'] or '?'})",
        f"made by ggflip {facts['ggflip_version']} (set {facts['set']}); {counts}",
        f"size: {facts['size']:,} bytes in {facts['files']} file(s): "
        f"{facts['bytes_per_scored_position']:,} bytes per scored position (record "
        f"{facts['counts'].get('bytes_per_position', '?'):,}), "
        f"{facts['size_ratio_to_llama_cpp']:,}x smaller than llama-perplexity's KL base file "
        f"({facts['llama_cpp_bytes_per_position']:,})",
    ]
    print("\n".join(lines))


def _export(args: argparse.Namespace, parse: Callable[[Sequence[str]], argparse.Namespace]) -> int:
    """Score the baseline of the command after `--out PACK` and write its pack."""
    if not args.command_line or args.command_line[0] not in ("run", "kld"):
        raise UsageError(
            "baseline export needs the command whose baseline to export after --out PACK: "
            "`run FLAGS...` or `kld FLAGS...`"
        )
    inner = parse(args.command_line)
    if getattr(inner, "baseline_pack", None):
        raise UsageError("baseline export computes a baseline; drop --baseline-pack")
    if inner.no_cache:
        raise UsageError("baseline export reads the baseline from the cache; drop --no-cache")
    if inner.command == "kld":
        return _export_corpus(inner, args.out)
    from ggflip.tasks.generation import is_generation_task

    inner.task = inner.task or "mmlu"
    if inner.baseline and not inner.quant and not inner.quant_settings:
        inner.quant = [inner.baseline]  # a set needs a quant; export drops them all
    if is_generation_task(inner.task, inner.task_file):
        return _export_generation(inner, args.out)
    return _export_choice(inner, args.out)


def _finish(pack: Pack) -> int:
    _print_facts(pack_facts(pack), intact=True)
    return int(ExitCode.OK)


def _baseline_alone(spec: Any, engine: Callable[..., Any], fold_class: Any) -> tuple[Any, int, Any]:
    """Score `spec`'s baseline alone with the mode's `engine` and fold (progress on stderr, no
    report): the spec without its quants, the exit code and the factory."""
    from ggflip.backends.registry import backend_factory

    model_set = dataclasses.replace(spec.model_set, quants=())
    spec = dataclasses.replace(spec, model_set=model_set)
    factory = backend_factory(model_set)
    fold = fold_class(spec, time.monotonic)
    code = follow_run(engine(spec, factory), fold, console(stderr=True), lambda report: None)
    return spec, code, factory


def _export_choice(inner: argparse.Namespace, out: Path) -> int:
    from ggflip.choice.engine import run_comparison
    from ggflip.choice.fold import ChoiceFold
    from ggflip.cli.run import build_run_spec
    from ggflip.packs.choice import export_choice

    spec = dataclasses.replace(build_run_spec(inner), floor=False)
    spec, code, factory = _baseline_alone(spec, run_comparison, ChoiceFold)
    return code or _finish(export_choice(spec, factory, out))


def _export_corpus(inner: argparse.Namespace, out: Path) -> int:
    from ggflip.corpus.engine import run_kld
    from ggflip.corpus.fold import CorpusFold
    from ggflip.corpus.setup import kld_options, resolve_kld_spec
    from ggflip.packs.corpus import export_corpus

    if not inner.text or inner.quant:
        raise UsageError("kld: give --text FILE and a models.toml set (its quants are ignored)")
    spec, code, factory = _baseline_alone(resolve_kld_spec(kld_options(inner)), run_kld, CorpusFold)
    return code or _finish(export_corpus(spec, factory, out))


def _export_generation(inner: argparse.Namespace, out: Path) -> int:
    from ggflip.cli.generate import gen_options
    from ggflip.generate.engine import run_generation
    from ggflip.generate.fold import GenFold
    from ggflip.generate.setup import resolve_gen_spec
    from ggflip.packs.generate import export_generation

    spec, code, factory = _baseline_alone(
        resolve_gen_spec(gen_options(inner)), run_generation, GenFold
    )
    return code or _finish(export_generation(spec, factory, out))

"""`ggflip quantize` and `ggflip inspect`: the GGUF-world subcommands (and, registered beside
them, `ggflip report` from `ggflip.cli.report`).

Like `ggflip run`, each writes data on stdout (one JSON document with `--json`) and progress
on stderr, and owns no logic of its own: quantizing is `ggflip.gguf.quantize`, file facts are
`ggflip.gguf.header.read_header` (memory: `ggflip.cli.memory`) and models.toml edits are
`ggflip.config.patch`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from ggflip.cli.consoles import console
from ggflip.cli.memory import add_memory_flags, check_memory_flags, facts_with_memory, memory_rows
from ggflip.cli.report import add_report_parser
from ggflip.cli.report import report_command as report_command  # `main` dispatches through here
from ggflip.cli.scoring_flags import add_model_flags
from ggflip.errors import ExitCode, UsageError
from ggflip.gguf.header import read_header
from ggflip.reports.tables import imatrix_text

if TYPE_CHECKING:
    from ggflip.gguf.imatrix import Imatrix
    from ggflip.gguf.quantize import QuantizedFile


def add_gguf_parsers(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register the quantize, inspect and report subcommands."""
    _add_quantize_parser(subparsers)
    inspect = subparsers.add_parser(
        "inspect", help="show a GGUF's architecture, size, types and vocabulary"
    )
    inspect.add_argument(
        "files",
        nargs="+",
        metavar="FILE.gguf",
        help="GGUF files (a split one by its first part) or hf:// references",
    )
    inspect.add_argument(
        "--json",
        action="store_true",
        help="one JSON document: an object for one file, an array for several",
    )
    add_memory_flags(inspect)
    add_report_parser(subparsers)


def _add_quantize_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register the quantize subcommand and its flags."""
    quantize = subparsers.add_parser(
        "quantize", help="make quants of a GGUF with llama.cpp and add them to models.toml"
    )
    quantize.add_argument(
        "base", help="the F16 (or BF16/F32) GGUF to quantize, or hf://OWNER/REPO/FILE.gguf"
    )
    quantize.add_argument(
        "--types", required=True, help="comma-separated llama.cpp types, e.g. Q8_0,Q5_K_M,Q4_K_M"
    )
    quantize.add_argument(
        "--imatrix", type=Path, help="importance matrix from llama-imatrix (GGUF or legacy .dat)"
    )
    quantize.add_argument(
        "--out", type=Path, help="folder for the quants (default: the base's folder)"
    )
    add_model_flags(
        quantize,
        models_help="models file to add them to (default: ./models.toml)",
        set_help="set to add them to (default: the base's name without -F16)",
    )
    quantize.add_argument("--no-models", action="store_true", help="do not touch the models file")
    quantize.add_argument(
        "--threads", type=int, default=0, help="quantization threads (default: every core)"
    )
    quantize.add_argument(
        "--force", action="store_true", help="re-make quants whose file already exists"
    )
    quantize.add_argument(
        "--json", action="store_true", help="write what was made as one JSON document on stdout"
    )


def inspect_command(args: argparse.Namespace) -> int:
    """Print each file's facts as a table, or as JSON."""
    check_memory_flags(args)
    facts = [facts_with_memory(read_header(_resolve_base(path)), args) for path in args.files]
    if args.json:
        sys.stdout.write(json.dumps(facts[0] if len(facts) == 1 else facts, indent=1) + "\n")
        return int(ExitCode.OK)
    out = console()
    for fact in facts:
        # The path on its own line: as a table title it would be folded to the table's width.
        out.print(fact["path"], style="bold", markup=False, highlight=False, soft_wrap=True)
        table = Table(show_header=False)
        table.add_column("key", style="bold")
        table.add_column("value")
        for key in (
            "name",
            "architecture",
            "file_type",
            "n_params",
            "file_size",
            "bits_per_weight",
            "n_tensors",
            "n_vocab",
            "vocab_fingerprint",
            "context_length",
            "has_chat_template",
        ):
            value = fact[key]
            shown = (
                f"{value:,}"
                if key in ("n_params", "file_size")
                else ("unknown" if value is None else str(value))
            )
            table.add_row(key, shown)
        table.add_row(
            "tensor types",
            ", ".join(f"{name} ×{count}" for name, count in fact["tensor_types"].items()),
        )
        table.add_row("imatrix", imatrix_text(fact["imatrix"]) or "none")
        if len(fact["parts"]) > 1:
            table.add_row("parts", str(len(fact["parts"])))
        for key, value in memory_rows(fact):
            table.add_row(key, value)
        out.print(table)
    return int(ExitCode.OK)


def quantize_command(args: argparse.Namespace) -> int:
    """Make the quants with progress on stderr, add them to models.toml, print what was made."""
    from ggflip.gguf.imatrix import load_imatrix

    types = [t.strip() for t in args.types.split(",") if t.strip()]
    if not types:
        raise UsageError("--types needs at least one llama.cpp type, e.g. Q4_K_M")
    base, out_dir = _resolve_base(args.base), args.out
    if out_dir is None:
        out_dir = Path.cwd() if args.base.startswith("hf://") else base.parent
    read_header(
        base
    )  # refuse a missing, truncated or vocabulary-less base before llama.cpp sees it
    imatrix = load_imatrix(args.imatrix) if args.imatrix else None
    stderr = console(stderr=True)
    made = _quantize_with_progress(args, base, types, out_dir, imatrix, stderr)
    document: dict[str, Any] = {"base": str(base), "quants": [], "models": None, "set": None}
    for item in made:
        header = read_header(item.path)
        document["quants"].append(
            {
                "type": item.qtype,
                "path": str(item.path),
                "seconds": round(item.seconds, 2),
                "file_size": header.file_size,
                "bits_per_weight": round(header.bits_per_weight, 4),
            }
        )
    if not args.no_models:
        _add_to_models(args, base, made, document, stderr)
    if args.json:
        sys.stdout.write(json.dumps(document, indent=1) + "\n")
    else:
        for quant in document["quants"]:
            print(f"{quant['type']}\t{quant['bits_per_weight']:.2f} bpw\t{quant['path']}")
    return int(ExitCode.OK)


def _quantize_with_progress(
    args: argparse.Namespace,
    base: Path,
    types: list[str],
    out_dir: Path,
    imatrix: Imatrix | None,
    stderr: Console,
) -> list[QuantizedFile]:
    """Quantize `base` into each type, one progress bar a type (a kept file shows as done)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from ggflip.gguf.quantize import quantize_types

    with Progress(
        TextColumn("{task.description:<12}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[tensor]}"),
        TimeElapsedColumn(),
        console=stderr,
    ) as progress:
        bars: dict[str, Any] = {}

        def started(qtype: str, path: Path) -> None:
            if path.exists() and not args.force:  # kept as it is: nothing to show progress of
                bars["current"] = progress.add_task(
                    qtype, total=1, completed=1, tensor=f"{path.name} exists, kept (--force)"
                )
            else:
                bars["current"] = progress.add_task(qtype, total=None, tensor=path.name)

        def tensor(done: int, total: int, name: str) -> None:
            progress.update(bars["current"], completed=done, total=total, tensor=name)

        return quantize_types(
            base,
            types,
            out_dir,
            n_threads=args.threads,
            imatrix=imatrix,
            on_start=started,
            on_tensor=tensor,
            overwrite=args.force,
        )


def _add_to_models(
    args: argparse.Namespace,
    base: Path,
    made: list[QuantizedFile],
    document: dict[str, Any],
    stderr: Console,
) -> None:
    """Add the quants to `args.models`, record the file and set in `document`, say what changed."""
    from ggflip.config.patch import add_quants
    from ggflip.gguf.quantize import quantized_name

    set_name = args.set_name or quantized_name(base, "").removesuffix("-.gguf")
    existed, before = args.models.exists(), _set_labels(args.models, set_name)
    config = add_quants(args.models, set_name, base, [(item.qtype, item.path) for item in made])
    added = [q.label for q in config.sets[set_name].quants if q.label not in before]
    document["models"], document["set"] = str(args.models), set_name
    if not existed:
        what = f"created {args.models} with set '{set_name}' ({len(added)} quants)"
    elif added:
        what = f"added {', '.join(added)} to set '{set_name}' in {args.models}"
    else:
        what = f"set '{set_name}' in {args.models} already lists them; nothing added"
    stderr.print(f"{what} (--no-models: leave it alone)", markup=False, highlight=False)


def _set_labels(models: Path, set_name: str) -> set[str]:
    """The labels set `set_name` of `models` holds now (none when the file or the set is new, or
    unreadable: `add_quants` then says what is wrong)."""
    from ggflip.config.models_toml import load_models_toml
    from ggflip.errors import ConfigError

    try:
        model_set = load_models_toml(models).sets.get(set_name) if models.exists() else None
    except ConfigError:
        return set()
    return {m.label for m in model_set.models} if model_set else set()


def _resolve_base(base: str) -> Path:
    if base.startswith("hf://"):  # hf:// references are resolved through the Hugging Face cache
        from ggflip.gguf.hf import resolve_hf

        return resolve_hf(base)
    return Path(base)

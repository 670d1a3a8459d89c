"""The `ggflip` command: headless runs (`--json` or a summary table) and model preparation.

stdout is data: with `--json` it carries exactly one JSON document (`ggflip.choice.report`), and
nothing else; progress, warnings and llama.cpp's logs go to stderr. A `GgflipError` becomes
one `ggflip: error: ...` line and the exit code of its class (`ggflip.errors.ExitCode`).
"""

from __future__ import annotations

import argparse
import difflib
import errno
import importlib
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from ggflip import __version__
from ggflip.cli.consoles import discard_stdout, stopping_on_closed_pipe
from ggflip.cli.logs import setup_logging
from ggflip.cli.scoring_flags import (
    add_cache_flags,
    add_calibration_flag,
    add_model_flags,
    add_pack_flags,
    add_quant_settings_flag,
    add_scoring_flags,
    add_text_flags,
    add_verdict_flags,
)
from ggflip.errors import DiskFullError, ExitCode, GgflipError, RunInterrupted

log = logging.getLogger("ggflip")


def _add_question_flags(parser: argparse.ArgumentParser) -> None:
    """The flags `run` and `tui` share: which models, task, questions and caches (defined once)."""
    add_model_flags(parser)
    parser.add_argument(
        "--baseline",
        help="without models.toml: the baseline GGUF (a path or hf://OWNER/REPO/FILE.gguf)",
    )
    parser.add_argument(
        "--quant",
        action="append",
        default=[],
        help="with --baseline: a quant GGUF, folder, glob, hf:// reference or "
        "hf://OWNER/REPO/*Q4*.gguf pattern (repeatable)",
    )
    add_quant_settings_flag(parser)
    add_calibration_flag(parser, "questions")
    _add_task_flags(parser)
    _add_sample_flags(parser)
    add_cache_flags(parser, "neither read nor write the baseline cache and the run store")
    parser.add_argument(
        "--batch-size",
        type=int,
        help="questions per llama.cpp call (default: 4, or the --baseline-pack's)",
    )
    parser.add_argument(
        "--chat",
        action="store_true",
        help="generation tasks: render prompts with the baseline GGUF's chat template",
    )
    parser.add_argument("--system", help="with --chat: a system message before every conversation")
    add_scoring_flags(parser)
    parser.add_argument(
        "--max-new-tokens",
        type=int,
        help="generation tasks: most tokens generated per turn (default: the task's)",
    )


def _add_task_flags(parser: argparse.ArgumentParser) -> None:
    """Which task and questions: `--task`, `--task-file`, `--data`, `--field`, `--mode` and the
    shots."""
    parser.add_argument(
        "--task",
        help="task name (default: mmlu, or the --baseline-pack's; `ggflip tasks` lists them)",
    )
    parser.add_argument(
        "--task-file", type=Path, help="a TOML task file declaring your own task (overrides --task)"
    )
    parser.add_argument(
        "--data",
        help=(
            "questions: a local JSONL/JSON/CSV/Parquet file, or hf:NAME[:CONFIG[:SPLIT]] via "
            "datasets"
        ),
    )
    parser.add_argument(
        "--field",
        action="append",
        default=[],
        metavar="NAME=COLUMN",
        help=(
            "map a question field to your column, e.g. question=q, choices=a,b,c, answer=label "
            "(repeatable)"
        ),
    )
    parser.add_argument(
        "--mode", choices=("letter", "cloze"), help="answer mode, overriding the task's"
    )
    parser.add_argument(
        "--shots", type=int, help="few-shot examples per question (default: the task's)"
    )
    parser.add_argument(
        "--shots-from",
        help="where shots come from (a file or hf: source; default: the task's dev/train split)",
    )


def _add_sample_flags(parser: argparse.ArgumentParser) -> None:
    """Which of the questions: `--limit` (with `--seed` or `--first`) and `--subject`."""
    parser.add_argument(
        "--limit",
        type=int,
        help="use N questions: a fixed sample stratified by subject (see --seed, --first)",
    )
    parser.add_argument(
        "--seed", type=int, help="with --limit: the seed of the sample (default: 0)"
    )
    parser.add_argument(
        "--first", action="store_true", help="with --limit: the first N questions, not a sample"
    )
    parser.add_argument(
        "--subject", action="append", default=[], help="only this subject (repeatable)"
    )


def _add_run_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    run = subparsers.add_parser("run", help="compare a baseline with its quants on questions")
    _add_question_flags(run)
    run.add_argument(
        "--skip-bad-rows",
        action="store_true",
        help="skip malformed question rows (counted in the report)",
    )
    run.add_argument(
        "--json", action="store_true", help="write the report as one JSON document on stdout"
    )
    run.add_argument("--out", type=Path, help="also write the JSON report to this file")
    _add_run_scoring_flags(run)
    add_pack_flags(run)
    add_verdict_flags(run)
    run.add_argument(
        "--rows",
        type=int,
        default=10,
        help="flipped questions listed per quant in the table output (default: 10)",
    )


def _add_run_scoring_flags(run: argparse.ArgumentParser) -> None:
    """How `run` scores: resume, the baseline record's top K and tail draws, prefix reuse, the
    noise floor."""
    run.add_argument(
        "--no-resume",
        action="store_true",
        help=(
            "discard this run's stored progress and score it again (the baseline cache still "
            "applies)"
        ),
    )
    run.add_argument(
        "--top-k",
        type=int,
        default=None,
        help=(
            "baseline tokens kept per scored position in the cache (default: 512 for letter, "
            "64 for cloze tasks)"
        ),
    )
    run.add_argument(
        "--tail-samples",
        type=int,
        default=None,
        help=(
            "baseline tail draws kept per scored position for the KL tail estimate (default: "
            "32 for letter, 128 for cloze tasks; 0: the lower bound only)"
        ),
    )
    run.add_argument(
        "--no-prefix-reuse",
        action="store_true",
        help=(
            "decode every prompt in full instead of sharing few-shot prefixes and cloze contexts "
            "(for benchmarks)"
        ),
    )
    run.add_argument(
        "--floor",
        action="store_true",
        help=(
            "also score the baseline again under another decode grouping (the noise floor) and "
            "give each quant a verdict; off by default for speed (on in the TUI)"
        ),
    )


def _add_tui_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    tui = subparsers.add_parser(
        "tui", help="open the terminal UI (also what `ggflip` alone does on a terminal)"
    )
    _add_question_flags(tui)
    add_pack_flags(tui)
    tui.add_argument(
        "--no-floor",
        action="store_true",
        help="skip the noise floor (the baseline scored again under another decode grouping)",
    )
    tui.add_argument(
        "--export-dir",
        type=Path,
        help="where the e key writes the JSON and Markdown report (default: .)",
    )
    # corpus mode: open the KLD run view on this text instead of the setup view
    add_text_flags(
        tui,
        "corpus mode: score this UTF-8 text (or each file of this folder, repeatable) like "
        "`ggflip kld` and show it shaded by KL",
        required=False,
    )


class _Parser(argparse.ArgumentParser):
    """argparse with its errors as one line, the hint first: `ggflip: error: MESSAGE (ggflip run
    --help lists every flag)`, exit 2, instead of the whole usage before the message; no
    abbreviated flags (`kld --baseline X` is not `--baseline-pack X`). Subcommands inherit it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **{"allow_abbrev": False, **kwargs})

    def error(self, message: str) -> NoReturn:
        message = f"ggflip: error: {message} ({self.prog} --help lists every flag)\n"
        self.exit(int(ExitCode.USAGE), message)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = _Parser(
        prog="ggflip",
        description="What quantization really did to a local LLM: flips and KL against the F16.",
    )
    parser.add_argument("--version", action="version", version=f"ggflip {__version__}")
    _add_log_flags(parser, verbose=False, log_file=None)
    subparsers = parser.add_subparsers(dest="command")
    _add_run_parser(subparsers)
    _add_tui_parser(subparsers)
    from ggflip.cli.gguf import add_gguf_parsers

    add_gguf_parsers(subparsers)
    from ggflip.cli.attribute import add_attribute_parser
    from ggflip.cli.baseline import add_baseline_parser
    from ggflip.cli.kld import add_kld_parser
    from ggflip.cli.pick import add_pick_parser

    add_kld_parser(subparsers)
    add_pick_parser(subparsers)
    add_attribute_parser(subparsers)
    add_baseline_parser(subparsers)
    tasks = subparsers.add_parser("tasks", help="list the built-in tasks")
    tasks.add_argument(
        "--json", action="store_true", help="write the list as one JSON document on stdout"
    )
    prepare = subparsers.add_parser(
        "prepare-demo",
        help="build the embedded default models (Gemma 3 270M F16 and quants) into the cache",
    )
    prepare.add_argument(
        "--types",
        default=None,
        help="comma-separated quant types (default: Q8_0,Q5_K_M,Q4_K_M,Q3_K_M,Q2_K)",
    )
    # People type -v after the subcommand as often as before it. SUPPRESS keeps a subcommand
    # from resetting a value given before it.
    for subparser in subparsers.choices.values():
        _add_log_flags(subparser, verbose=argparse.SUPPRESS, log_file=argparse.SUPPRESS)
    return parser


def _add_log_flags(parser: argparse.ArgumentParser, verbose: object, log_file: object) -> None:
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=verbose,
        help="show llama.cpp's log on stderr",
    )
    parser.add_argument(
        "--log-file",
        type=Path,
        default=log_file,
        help="write ggflip's and llama.cpp's log to this file",
    )


def parse_command_line(argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse the command line; an unknown flag close to a known one gets "did you mean".

    Raises:
        SystemExit: 2 on a usage error, after one line naming it (`_Parser.error`).
    """
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if not unknown:
        return args
    # argparse has no public way to reach a subcommand's parser or its flags.
    command = parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and args.command in action.choices:
            command = action.choices[args.command]
    known = [flag for action in command._actions for flag in action.option_strings]
    for word in unknown:
        close = difflib.get_close_matches(word.split("=", 1)[0], known, n=1, cutoff=0.75)
        if word.startswith("--") and close:
            command.error(f"unrecognized argument {word}; did you mean {close[0]}?")
    command.error(f"unrecognized arguments: {' '.join(unknown)}")
    raise AssertionError("unreachable: argparse's error() exits")


# Subcommands whose module is imported only when run: name -> (module, function of `args`).
_SUBCOMMANDS = {
    "kld": ("ggflip.cli.kld", "kld_command"),
    "attribute": ("ggflip.cli.attribute", "attribute_command"),
    "pick": ("ggflip.cli.pick", "pick_command"),
    "tasks": ("ggflip.cli.run", "tasks_command"),
    "prepare-demo": ("ggflip.cli.run", "prepare_demo_command"),
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `ggflip` command; returns the process exit code."""
    return stopping_on_closed_pipe(lambda: _main(argv))


def _main(argv: Sequence[str] | None) -> int:
    args = parse_command_line(argv)
    tui = args.command == "tui" or (
        args.command is None and sys.stdout.isatty() and sys.stdin.isatty()
    )
    setup_logging(args.verbose, args.log_file, to_stderr=not tui)
    try:
        if args.command == "run":
            return _run_command(args)
        if args.command in _SUBCOMMANDS:
            module, function = _SUBCOMMANDS[args.command]
            return int(getattr(importlib.import_module(module), function)(args))
        if args.command == "baseline":
            from ggflip.cli.baseline import baseline_command

            return baseline_command(args, parse_command_line)
        if tui:
            from ggflip.tui.command import tui_command

            return tui_command(args)
        if args.command in ("quantize", "inspect", "report"):
            from ggflip.cli import gguf as cli_gguf

            return getattr(cli_gguf, f"{args.command}_command")(args)  # type: ignore[no-any-return]
        build_parser().print_help(sys.stderr)
        return ExitCode.USAGE
    except GgflipError as exc:
        print(f"ggflip: error: {exc}", file=sys.stderr)
        return int(exc.exit_code)
    except KeyboardInterrupt:
        print(f"ggflip: error: {RunInterrupted('interrupted')}", file=sys.stderr)
        return int(ExitCode.INTERRUPTED)
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise  # a closed pipe (`| head`) stops quietly in `stopping_on_closed_pipe`
        discard_stdout()
        print(
            "ggflip: error: "
            f"{DiskFullError(f'disk full while writing the report: {exc.strerror}')}",
            file=sys.stderr,
        )
        return int(ExitCode.DISK)


def _run_command(args: argparse.Namespace) -> int:
    """`ggflip run`: multiple choice, or generation mode when the task is a generation task
    (`tasks.generation.is_generation_task`, as the TUI decides), said on stderr."""
    from ggflip.cli.baseline import settle_task
    from ggflip.tasks.generation import is_generation_task

    settle_task(args)
    if is_generation_task(args.task, args.task_file):
        from ggflip.cli.generate import generate_command

        return generate_command(args, announce=True)
    from ggflip.cli.run import run_command

    return run_command(args)


if __name__ == "__main__":
    sys.exit(main())

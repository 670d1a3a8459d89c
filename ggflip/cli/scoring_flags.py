"""The flags several subcommands share, each defined once: which models (`--models`, `--set`),
the caches, corpus mode's text and chunks, how the numpy scoring overlaps llama.cpp's decode, and
the equivalence margins with `--fail-if`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ggflip.corpus.spec import DEFAULT_CTX
from ggflip.errors import UsageError
from ggflip.runs.pipeline import requested_workers
from ggflip.scoring.equivalence import DEFAULT_MARGINS, Margins


def add_model_flags(
    parser: argparse.ArgumentParser,
    models_help: str = "models file (default: ./models.toml)",
    set_help: str = "comparison set in the models file (default: its only set)",
) -> None:
    """`--models PATH` and `--set NAME` (into `set_name`)."""
    parser.add_argument("--models", type=Path, default=Path("models.toml"), help=models_help)
    parser.add_argument("--set", dest="set_name", help=set_help)


def add_quant_settings_flag(parser: argparse.ArgumentParser) -> None:
    """`--quant-settings NAME=VALUE,...` (repeatable, into `quant_settings`): the baseline's own
    file under other llama settings as one more quant (`ggflip.config.settings_quants`)."""
    parser.add_argument(
        "--quant-settings",
        action="append",
        default=[],
        metavar="NAME=VALUE,...",
        help=(
            "also compare the baseline's file under these llama settings, as a quant labelled by "
            "what differs (e.g. type_k=q8_0,type_v=q8_0,flash_attn=on: a q8_0 KV cache; "
            "repeatable)"
        ),
    )


def add_calibration_flag(parser: argparse.ArgumentParser, what: str) -> None:
    """`--calibration FILE` (repeatable, into `calibration`): `ggflip.tasks.calibration`."""
    parser.add_argument(
        "--calibration",
        type=Path,
        action="append",
        metavar="FILE",
        help=(
            f"an imatrix calibration text: report (and warn from 1%%) the share of the {what}' "
            "8-word windows that occur in it (repeatable)"
        ),
    )


def add_cache_flags(parser: argparse.ArgumentParser, no_cache_help: str) -> None:
    """`--cache-dir PATH` and `--no-cache` (whose help says what the subcommand keeps)."""
    parser.add_argument(
        "--cache-dir",
        type=Path,
        help="cache directory (default: $GGFLIP_CACHE_DIR or ~/.cache/ggflip)",
    )
    parser.add_argument("--no-cache", action="store_true", help=no_cache_help)


def add_pack_flags(parser: argparse.ArgumentParser) -> None:
    """`--baseline-pack PACK` and `--allow-numerics-mismatch` (`ggflip.packs`)."""
    parser.add_argument(
        "--baseline-pack",
        metavar="PACK",
        help=(
            "compare against this baseline pack (a path or hf://OWNER/REPO/FILE) instead of a "
            "baseline GGUF, which is never opened; with --quant FILE or a --set (its baseline "
            "is replaced); the task, questions or text come from the pack unless given"
        ),
    )
    parser.add_argument(
        "--allow-numerics-mismatch",
        action="store_true",
        help=(
            "with --baseline-pack: compare even when the pack's baseline was computed by another "
            "llama.cpp build or settings (the report says so)"
        ),
    )


def add_text_flags(parser: argparse.ArgumentParser, text_help: str, required: bool) -> None:
    """Corpus mode's `--text` (repeatable), `--ctx` and `--chunks`."""
    parser.add_argument("--text", type=Path, action="append", required=required, help=text_help)
    parser.add_argument(
        "--ctx",
        type=int,
        help=f"tokens per chunk; the second half is scored (default: {DEFAULT_CTX})",
    )
    parser.add_argument(
        "--score-from",
        type=int,
        metavar="POS",
        help=(
            "score each chunk from this position on (default: ctx/2, as llama-perplexity; 0: "
            "every position, so KL by position covers the whole context)"
        ),
    )
    parser.add_argument(
        "--chunks",
        type=int,
        help="score at most N chunks of each text (default: every full chunk)",
    )


def add_scoring_flags(parser: argparse.ArgumentParser) -> None:
    """`--scoring-threads N` and `--no-overlap` (see `ggflip.runs.pipeline`)."""
    parser.add_argument(
        "--scoring-threads",
        type=int,
        metavar="N",
        help=(
            "threads that score a batch's logits while llama.cpp decodes the next (default: the "
            "cores llama.cpp leaves free, all but one with n_gpu_layers set, at least 1; 0: no "
            "overlap)"
        ),
    )
    parser.add_argument(
        "--no-overlap",
        action="store_true",
        help="decode and score in turn in one thread (same numbers; for comparisons)",
    )


def scoring_threads(args: argparse.Namespace) -> int | None:
    """The scoring threads the flags ask for: None (automatic), or a count (0: no overlap)."""
    return requested_workers(
        bool(getattr(args, "no_overlap", False)), getattr(args, "scoring_threads", None)
    )


def add_verdict_flags(parser: argparse.ArgumentParser, answers: bool = True) -> None:
    """The equivalence margins (`--margin-accuracy` and `--margin-flips` where there are answers,
    `--margin-kl`) and `--fail-if` (`ggflip.scoring.equivalence`, `ggflip.scoring.gates`)."""
    defaults = DEFAULT_MARGINS
    if answers:
        _add_answer_margins(parser)
    parser.add_argument(
        "--margin-kl",
        type=float,
        metavar="NATS",
        help=f"equivalence: the mean KL allowed, in nats (default: {defaults.kl:g})",
    )
    add_fail_if_flag(parser)


def _add_answer_margins(parser: argparse.ArgumentParser) -> None:
    defaults = DEFAULT_MARGINS
    parser.add_argument(
        "--margin-accuracy",
        type=float,
        metavar="POINTS",
        help=(
            "equivalence: the accuracy difference allowed, in percentage points (default: "
            f"±{100 * defaults.accuracy:g})"
        ),
    )
    parser.add_argument(
        "--margin-flips",
        type=float,
        metavar="PERCENT",
        help=f"equivalence: the flip rate allowed, in percent (default: {100 * defaults.flips:g})",
    )


def add_fail_if_flag(parser: argparse.ArgumentParser) -> None:
    """`--fail-if COND` (repeatable; `ggflip.scoring.gates`): for `run`, `kld` and `pick`."""
    parser.add_argument(
        "--fail-if",
        action="append",
        default=[],
        metavar="COND",
        help=(
            "exit with code 10 when any quant meets COND (NAME OP VALUE, OP one of > >= < <= = "
            "!=; NAME a metric, verdict or equivalence), e.g. kl_mean>0.01, verdict=different, "
            "equivalence!=equivalent (repeatable; the report is written first)"
        ),
    )


def margins(args: argparse.Namespace) -> Margins:
    """The equivalence margins the flags ask for, as fractions (points and percent / 100).

    Raises:
        UsageError: a margin not in (0, 100) points or percent, or a KL margin not positive.
    """
    accuracy = getattr(args, "margin_accuracy", None)
    flips = getattr(args, "margin_flips", None)
    kl = getattr(args, "margin_kl", None)
    for flag, value in (("--margin-accuracy", accuracy), ("--margin-flips", flips)):
        if value is not None and not 0 < value < 100:
            raise UsageError(f"{flag} must be between 0 and 100 (exclusive), got {value:g}")
    if kl is not None and not kl > 0:
        raise UsageError(f"--margin-kl must be positive, got {kl:g}")
    return Margins(
        accuracy=DEFAULT_MARGINS.accuracy if accuracy is None else accuracy / 100,
        flips=DEFAULT_MARGINS.flips if flips is None else flips / 100,
        kl=DEFAULT_MARGINS.kl if kl is None else kl,
    )

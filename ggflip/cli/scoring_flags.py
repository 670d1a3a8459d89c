"""The flags several subcommands share, each defined once: which models (`--models`, `--set`),
the caches, corpus mode's text and chunks, and how the numpy scoring overlaps llama.cpp's decode.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ggflip.corpus.spec import DEFAULT_CTX
from ggflip.runs.pipeline import requested_workers


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


def add_text_flags(parser: argparse.ArgumentParser, text_help: str, required: bool) -> None:
    """Corpus mode's `--text` (repeatable), `--ctx` and `--chunks`."""
    parser.add_argument("--text", type=Path, action="append", required=required, help=text_help)
    parser.add_argument(
        "--ctx",
        type=int,
        default=DEFAULT_CTX,
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

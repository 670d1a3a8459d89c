"""The flags every scoring subcommand shares: how the numpy scoring overlaps llama.cpp's decode."""

from __future__ import annotations

import argparse

from ggflip.runs.pipeline import requested_workers


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

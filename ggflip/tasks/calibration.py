"""Calibration hygiene: how much of the evaluation text a quant's imatrix was calibrated on.

A quant made with an importance matrix is tuned to its calibration text; judged on that same
text, it looks better than it is. `--calibration FILE` (repeatable) measures the overlap as the
share of the evaluation's 8-word windows (whitespace-split words, 8 in a row) that also occur in
the calibration file, and a report warns from `WARN_SHARE` on. Without the file, a quant whose
GGUF names a well-known calibration set (`KNOWN_SETS`) gets a note.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ggflip.errors import DataError

WINDOW = 8
WARN_SHARE = 0.01
"""From this share of overlapping windows on, a report warns (1%: more than chance repeats)."""

KNOWN_SETS: dict[str, str] = {
    "calibration_datav3": "bartowski's imatrix calibration set",
    "groups_merged": "kalomaze's groups_merged imatrix set",
    "wiki.train.raw": "WikiText-2's training split, llama.cpp's usual imatrix text",
    "wiki.test.raw": "WikiText-2's test split, llama-perplexity's usual text",
    "c4": "the C4 corpus",
}
"""Calibration sets common enough that their name in a GGUF is worth a note, by file stem."""


@dataclass(frozen=True)
class CalibrationOverlap:
    """How much of an evaluation text occurs in one calibration file."""

    file: str
    n_windows: int  # 8-word windows of the evaluation text
    overlapping: int  # of them, those that occur in the calibration file
    share: float
    warn: bool

    def line(self) -> str:
        """One line for a report: the share, how it was measured, and the warning."""
        text = (
            f"calibration {self.file}: {self.share:.1%} of the evaluation's {self.n_windows:,} "
            f"{WINDOW}-word windows occur in it ({self.overlapping:,})"
        )
        if self.warn:
            text += "; a quant calibrated on it is judged on its own calibration text"
        return text


def _windows(words: list[str]) -> set[tuple[str, ...]]:
    return {tuple(words[i : i + WINDOW]) for i in range(len(words) - WINDOW + 1)}


def read_calibration(path: Path) -> str:
    """The calibration file's text.

    Raises:
        DataError: the file cannot be read (one line naming it).
    """
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise DataError(f"--calibration {path}: cannot read it: {exc.strerror or exc}") from None


def calibration_overlap(evaluation: str, path: Path, calibration: str) -> CalibrationOverlap:
    """The share of `evaluation`'s 8-word windows found in `calibration` (the text of `path`)."""
    words = evaluation.split()
    total = max(len(words) - WINDOW + 1, 0)
    known = _windows(calibration.split())
    hits = sum(tuple(words[i : i + WINDOW]) in known for i in range(total))
    share = hits / total if total else 0.0
    return CalibrationOverlap(str(path), total, hits, share, share >= WARN_SHARE)


def calibration_warning(overlaps: Sequence[CalibrationOverlap]) -> str:
    """A short warning for a title line when the evaluation overlaps a calibration file, else ""."""
    flagged = [o for o in overlaps if o.warn]
    if not flagged:
        return ""
    worst = max(flagged, key=lambda o: o.share)
    return f"⚠ {worst.share:.0%} of it in calibration {Path(worst.file).name}"


def same_text_note(
    dataset: str, evaluated: Sequence[str], overlaps: Sequence[CalibrationOverlap] = ()
) -> str | None:
    """A warning when a quant's imatrix was calibrated on what is evaluated, else None.

    A `--calibration` file with the dataset's file name decides by its measured share (flagged
    from `WARN_SHARE`, with the share); without one, an evaluated text of that name is flagged.
    """
    name = Path(dataset.strip()).name
    if not name:
        return None
    same = [o for o in overlaps if Path(o.file).name == name]
    named = name in {Path(source).name for source in evaluated}
    if not (any(o.warn for o in same) if same else named):
        return None
    text = f"its imatrix was calibrated on {name}"
    text += ", a text evaluated here" if named else ""
    if same:
        worst = max(same, key=lambda o: o.share)
        text += f" ({worst.share:.1%} of the evaluation's {WINDOW}-word windows occur in it)"
    return text + ": it is judged on its own calibration text"


def known_set_note(dataset: str) -> str | None:
    """A note when an imatrix dataset name is a well-known calibration set, else None."""
    stem = Path(dataset.strip()).name
    for name, what in KNOWN_SETS.items():
        if stem == name or stem.startswith(name + "."):
            return f"{dataset} is {what}: an evaluation on that text flatters this quant"
    return None

"""The setup view's model table: each model's role, label, size, bits per weight, weights and
file, from the GGUF headers read so far; plain strings, no Textual."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

from ggflip.config.models_toml import ModelSet

MODEL_COLUMNS = ("role", "label", "size", "bits/weight", "weights", "file")
"""Size and bits per weight come before the file name: a narrow terminal cuts the name."""


class ModelFacts(Protocol):
    """What was read from one model's GGUF header, or why it could not be."""

    size: int | None
    n_params: int | None
    bits_per_weight: float | None
    problem: str | None


def file_size(n_bytes: int) -> str:
    """A file size in binary units, one decimal."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n_bytes >= scale:
            return f"{n_bytes / scale:.1f} {unit}"
    return f"{n_bytes} B"


def count(n: int) -> str:
    """A parameter count, one decimal and a suffix (48.5k, 268.1M)."""
    for unit, scale in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f}{unit}"
    return str(n)


def model_rows(model_set: ModelSet, facts: Mapping[Path, ModelFacts]) -> list[tuple[str, ...]]:
    """One row per model of the set, in MODEL_COLUMNS order ("…" while its header is read)."""
    rows: list[tuple[str, ...]] = []
    for i, model in enumerate(model_set.models):
        info = facts.get(model.path)
        if info is None:
            size, bpw, weights = "…", "…", ""
        elif info.problem:
            size, bpw, weights = "–", "–", info.problem
        else:
            assert info.size is not None and info.n_params and info.bits_per_weight is not None
            size, bpw, weights = (
                file_size(info.size),
                f"{info.bits_per_weight:.2f}",
                count(info.n_params),
            )
        role = "baseline" if i == 0 else "quant"
        rows.append((role, model.label, size, bpw, weights, model.path.name))
    return rows

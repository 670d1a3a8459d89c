"""A comparison set from files named on the command line, for a quick look without models.toml.

`--quant` takes a GGUF path, a folder (every `*.gguf` in it but the baseline; a split model
counts once, by its first part), a glob (`models/*Q4*.gguf`), an `hf://` reference, or an
`hf://owner/repo/*Q4*.gguf` pattern (`hf_glob.expand_hf_glob`: the repository's matching GGUFs).
Folder, glob and repository matches are ordered largest file first, which is most bits per
weight first. Labels are the file names without `.gguf` and without the prefix every model
shares, so `gemma-3-270m-F16.gguf` and `gemma-3-270m-Q4_0.gguf` become `F16` and `Q4_0`; names
that still collide carry their uploader (`Q4_K_M (bartowski)`).
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Sequence
from pathlib import Path

from ggflip.config.models_toml import (
    LlamaSettings,
    ModelSet,
    ModelSpec,
    expand_path,
    short_labels,
)
from ggflip.errors import UsageError
from ggflip.gguf.hf_glob import expand_hf_glob, is_hf_glob

CLI_SET_NAME = "command-line"
_LATER_PART = re.compile(r"-(?!00001)\d{5}-of-\d{5}\.gguf$")


def _expand_quant(raw: str, baseline: str, base_path: Path | None) -> list[tuple[str, Path | None]]:
    """(reference or path text, local path or None for hf://) pairs for one --quant value."""
    if raw.startswith("hf://"):
        if not is_hf_glob(raw):
            return [(raw, None)]
        refs = [ref for ref in expand_hf_glob(raw) if ref != baseline]
        if not refs:
            raise UsageError(f"--quant {raw}: it matches only the baseline")
        return [(ref, None) for ref in refs]
    path = expand_path(raw, Path.cwd())
    if path.is_dir():
        matches = sorted(path.glob("*.gguf"))
    elif glob.has_magic(raw):
        matches = sorted(Path(p) for p in glob.glob(os.path.expanduser(raw)) if p.endswith(".gguf"))
    else:
        return [(str(path), path)]
    matches = [m for m in matches if not _LATER_PART.search(m.name)]
    if base_path is not None:
        matches = [m for m in matches if m.resolve() != base_path.resolve()]
    if not matches:
        raise UsageError(f"--quant {raw}: no .gguf files there (besides the baseline)")
    matches.sort(key=lambda m: -m.stat().st_size)
    return [(str(m), m) for m in matches]


def _spec(raw: str, path: Path | None, label: str, settings: LlamaSettings) -> ModelSpec:
    if path is None:
        from ggflip.gguf.hf import parse_hf_ref

        try:
            return ModelSpec(
                label=label, path=parse_hf_ref(raw).placeholder, llama=settings, ref=raw
            )
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    return ModelSpec(label=label, path=path, llama=settings)


def model_set_from_files(
    baseline: str, quants: Sequence[str], settings: LlamaSettings | None = None
) -> ModelSet:
    """An in-memory ModelSet of `baseline` and the expanded `quants`, with default llama settings.

    Raises:
        UsageError: a folder or glob matches no GGUF, or a reference is malformed.
    """
    settings = settings or LlamaSettings()
    base_path = None if baseline.startswith("hf://") else expand_path(baseline, Path.cwd())
    entries = [(baseline, base_path)] + [
        entry for raw in quants for entry in _expand_quant(raw, baseline, base_path)
    ]
    labels = short_labels([raw for raw, _ in entries])
    specs = [_spec(raw, path, label, settings) for (raw, path), label in zip(entries, labels)]
    return ModelSet(
        name=CLI_SET_NAME,
        baseline=specs[0],
        quants=tuple(specs[1:]),
        description="from the command line",
    )

"""`ggflip quantize`: several quants of one base into a folder, through `ggflip.requant.quantize`.

Files are named `<base name without -F16>-<TYPE>.gguf`. `requant.quantize` runs llama.cpp's own
`llama_model_quantize` (with per-tensor progress and an optional importance matrix); this
module only names, orders and skips files.
"""
from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ggflip.errors import UsageError
from ggflip.imatrix import Imatrix
from ggflip.requant import TensorProgress, llama_ftype, quantize

_BASE_SUFFIX = re.compile(r"[-_.](F16|BF16|F32|f16|bf16|f32)$")



@dataclass(frozen=True)
class QuantizedFile:
    """One file `quantize_types` made (or found already made)."""

    qtype: str
    path: Path
    seconds: float


def quantized_name(base: Path, qtype: str) -> str:
    """The file name of `base`'s `qtype` quant: `gemma-3-270m-F16.gguf` -> `gemma-3-270m-Q4_0.gguf`."""
    stem = base.name.removesuffix(".gguf")
    split = re.match(r"^(.*)-\d{5}-of-\d{5}$", stem)
    stem = _BASE_SUFFIX.sub("", split[1] if split else stem)
    return f"{stem}-{qtype}.gguf"


def quantize_types(
    base: Path,
    types: Sequence[str],
    out_dir: Path,
    n_threads: int = 0,
    imatrix: Imatrix | None = None,
    on_start: Callable[[str, Path], None] | None = None,
    on_tensor: TensorProgress | None = None,
    overwrite: bool = False,
) -> list[QuantizedFile]:
    """Make `base`'s quants of every type in `out_dir`; existing files are kept unless `overwrite`.

    Raises:
        UsageError: an unknown type, or `out_dir` is not a folder.
        ModelFileError, DiskFullError: as `quantize`.
    """
    for qtype in types:
        llama_ftype(qtype)
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"--out {out_dir}: not a folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    made = []
    for qtype in types:
        dst = out_dir / quantized_name(base, qtype)
        if dst.resolve() == base.resolve():
            raise UsageError(f"{dst}: quantizing {qtype} would overwrite the base model; choose another --out")
        if on_start:
            on_start(qtype, dst)
        started = time.perf_counter()
        if overwrite or not dst.exists():
            quantize(base, dst, qtype, n_threads=n_threads, imatrix=imatrix, on_tensor=on_tensor)
        made.append(QuantizedFile(qtype, dst, time.perf_counter() - started))
    return made

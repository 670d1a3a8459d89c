"""How much memory a GGUF model needs at a given context, by llama.cpp's own rules.

Contract: `model_memory(path, ctx, kv_type_k, kv_type_v, swa_full)` returns a `Memory` with
the weights (the bytes of the tensor data of every part, what llama.cpp maps as its model
buffer), the KV cache llama.cpp allocates for that context and cache type, and their total.
The KV cache is computed from the GGUF's own dimensions (`KvLayout`: layers, KV heads, head
sizes, which layers use a sliding window and its width) with the rules of the llama.cpp that
llama-cpp-python 0.3.36 vendors:

* the context is padded to a multiple of 256 cells (`llama_context`: `GGML_PAD(n_ctx, 256)`);
  with a unified cache one stream holds all of it, otherwise each of `n_seq_max` streams holds
  `GGML_PAD(n_ctx / n_seq_max, 256)` cells;
* a layer caches `row_size(type_k, n_embd_k_gqa) + row_size(type_v, n_embd_v_gqa)` bytes a
  cell (`n_embd_*_gqa` = head size x KV heads of that layer);
* sliding-window layers (`llama_kv_cache_iswa`) get a cache of their own of
  `GGML_PAD(min(cells, n_swa * (n_seq_max if unified else 1) + n_ubatch), 256)` cells, or
  the full size with `swa_full` (llama.cpp's context default; `llama-cli`/`llama-server` turn it
  off unless `--swa-full` is given).

A file whose dimensions cannot be read, or whose cache llama.cpp lays out in a way this module
does not model (recurrent or hybrid state, multi-head latent attention, KV shared between
layers, a sliding window on an architecture whose layer pattern is not known here), gets a
layout marked unknown with the reason; its memory is then refused, never guessed.

`compute_bytes` is llama.cpp's compute buffer (the scratch memory of one ubatch's graph); it is
only known once llama.cpp plans the graph, so it is None here unless measured
(`ggflip.backends.measure`, `Memory.with_compute`; see docs/memory.md).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ggflip.errors import ModelFileError, UsageError, did_you_mean
from ggflip.gguf.header import GgufHeader, read_header
from ggflip.gguf.kv_cache_types import KV_CACHE_TYPES
from ggflip.gguf.kv_dims import KvLayout, kv_layout

__all__ = [
    "KV_TYPES",
    "KvLayout",
    "Memory",
    "estimate",
    "format_bytes",
    "kv_layout",
    "memory_or_reason",
    "model_memory",
    "parse_kv_type",
]

KV_TYPES = tuple(KV_CACHE_TYPES)
"""The cache types llama.cpp's `-ctk`/`-ctv` accept (`ggflip.gguf.kv_cache_types`, one table)."""
DEFAULT_N_UBATCH = 512  # llama.cpp's default n_ubatch
_CELL_PAD = 256


def _pad(value: int, to: int = _CELL_PAD) -> int:
    return (value + to - 1) // to * to


@dataclass(frozen=True)
class Memory:
    """One model's memory at one context: weights, KV cache, compute buffer (None: not known)
    and their total, with the settings it was computed for (`kv_cells`/`swa_cells`: the cells of
    one stream of the full-attention and of the sliding-window cache; `kv_swa_bytes`: the part of
    `kv_bytes` in the sliding-window cache)."""

    weights_bytes: int
    kv_bytes: int
    compute_bytes: int | None
    total_bytes: int
    ctx: int
    kv_type_k: str
    kv_type_v: str
    swa_full: bool
    layout: KvLayout = field(default_factory=lambda: KvLayout("unknown"))
    n_seq_max: int = 1
    n_ubatch: int = DEFAULT_N_UBATCH
    kv_unified: bool = True
    kv_cells: int = 0
    swa_cells: int = 0
    kv_swa_bytes: int = 0

    def with_compute(self, compute_bytes: int) -> Memory:
        """This memory with llama.cpp's compute buffer known (measured) and counted in the total."""
        total = self.weights_bytes + self.kv_bytes + compute_bytes
        return dataclasses.replace(self, compute_bytes=compute_bytes, total_bytes=total)

    def to_json(self) -> dict[str, Any]:
        """The `memory` object of `ggflip inspect --json` and of every report's model entry."""
        return {
            "weights_bytes": self.weights_bytes,
            "kv_bytes": self.kv_bytes,
            "compute_bytes": self.compute_bytes,
            "total_bytes": self.total_bytes,
            "ctx": self.ctx,
            "kv_type_k": self.kv_type_k,
            "kv_type_v": self.kv_type_v,
            "swa_full": self.swa_full,
            "n_seq_max": self.n_seq_max,
            "n_ubatch": self.n_ubatch,
            "kv_unified": self.kv_unified,
            "kv_cells": self.kv_cells,
            "swa_cells": self.swa_cells,
            "kv_swa_bytes": self.kv_swa_bytes,
            "layout": self.layout.to_json(),
        }


def parse_kv_type(text: str) -> str:
    """A KV cache type as llama.cpp's `-ctk`/`-ctv` name it ("Q8_0" -> "q8_0").

    Raises:
        UsageError: not one of `KV_TYPES`, with the closest name.
    """
    name = text.strip().lower()
    if name not in KV_TYPES:
        raise UsageError(
            f"unknown KV cache type '{text}' (llama.cpp takes {', '.join(KV_TYPES)})"
            + did_you_mean(name, KV_TYPES)
        )
    return name


def _block(kv_type: str) -> tuple[int, int]:
    """(values a block, bytes a block) of a ggml type."""
    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

    block, type_size = GGML_QUANT_SIZES[GGMLQuantizationType[kv_type.upper()]]
    return int(block), int(type_size)


def _check_blocks(layout: KvLayout, kv_type_k: str, kv_type_v: str) -> None:
    """Refuse a cache type whose block does not divide the head size, as llama.cpp does."""
    for which, kv_type, head in (("K", kv_type_k, layout.head_k), ("V", kv_type_v, layout.head_v)):
        block = _block(kv_type)[0]
        if head % block:
            raise UsageError(
                f"{which} cache type {kv_type} stores blocks of {block} values, which do not "
                f"divide this model's head size {head}; pick f16, bf16 or f32"
            )


def _row_bytes(kv_type: str, width: int) -> int:
    """ggml_row_size: the bytes of `width` values of `kv_type`."""
    block, type_size = _block(kv_type)
    return width // block * type_size


def _cell_bytes(layout: KvLayout, kv_type_k: str, kv_type_v: str) -> tuple[int, int]:
    """(bytes a cell over the full-attention layers, over the sliding-window layers)."""
    full = swa = 0
    for k, v, slides in zip(layout.n_embd_k_gqa, layout.n_embd_v_gqa, layout.swa_layers):
        size = _row_bytes(kv_type_k, k) + _row_bytes(kv_type_v, v)
        if slides and layout.has_swa:
            swa += size
        else:
            full += size
    return full, swa


def kv_cells(
    layout: KvLayout,
    ctx: int,
    *,
    swa_full: bool,
    n_seq_max: int = 1,
    n_ubatch: int = DEFAULT_N_UBATCH,
    kv_unified: bool = True,
) -> tuple[int, int, int]:
    """(cells of one full-attention stream, cells of one sliding-window stream, streams)."""
    n_ctx = _pad(ctx)
    n_stream = 1 if kv_unified else n_seq_max
    cells = n_ctx if kv_unified else _pad(n_ctx // n_seq_max)
    if not layout.has_swa or swa_full:
        return cells, cells, n_stream
    # llama.cpp caps n_batch (and so n_ubatch) at the padded context.
    window_cells = layout.n_swa * (n_seq_max if kv_unified else 1) + min(n_ubatch, n_ctx)
    return cells, _pad(min(cells, window_cells)), n_stream


def estimate(
    weights_bytes: int,
    layout: KvLayout,
    ctx: int,
    kv_type_k: str = "f16",
    kv_type_v: str | None = None,
    swa_full: bool = False,
    *,
    n_seq_max: int = 1,
    n_ubatch: int = DEFAULT_N_UBATCH,
    kv_unified: bool = True,
) -> Memory:
    """The memory of a model of `weights_bytes` and `layout` at a context of `ctx` tokens.

    `n_seq_max`, `n_ubatch` and `kv_unified` are llama.cpp's context parameters of those names
    (llama-cli's defaults: 1 sequence, ubatch 512).

    Raises:
        ModelFileError: the layout is unknown (its reason is in the message).
        UsageError: a non-positive ctx, an unknown cache type, or one whose blocks do not divide
            the model's head size (llama.cpp refuses it too).
    """
    if not layout.known:
        raise ModelFileError(f"cannot size the KV cache: {layout.unknown_reason}")
    if ctx <= 0:
        raise UsageError(f"--ctx must be positive, got {ctx}")
    kv_type_k = parse_kv_type(kv_type_k)
    kv_type_v = parse_kv_type(kv_type_v or kv_type_k)
    cells, swa_cells, n_stream = kv_cells(
        layout,
        ctx,
        swa_full=swa_full,
        n_seq_max=n_seq_max,
        n_ubatch=n_ubatch,
        kv_unified=kv_unified,
    )
    _check_blocks(layout, kv_type_k, kv_type_v)
    full_cell, swa_cell = _cell_bytes(layout, kv_type_k, kv_type_v)
    swa_bytes = n_stream * swa_cells * swa_cell
    kv_bytes = n_stream * cells * full_cell + swa_bytes
    return Memory(
        weights_bytes=weights_bytes,
        kv_bytes=kv_bytes,
        compute_bytes=None,
        total_bytes=weights_bytes + kv_bytes,
        ctx=ctx,
        kv_type_k=kv_type_k,
        kv_type_v=kv_type_v,
        swa_full=swa_full,
        layout=layout,
        n_seq_max=n_seq_max,
        n_ubatch=n_ubatch,
        kv_unified=kv_unified,
        kv_cells=cells,
        swa_cells=swa_cells if layout.has_swa else 0,
        kv_swa_bytes=swa_bytes,
    )


def header_memory(header: GgufHeader, ctx: int, **settings: Any) -> Memory:
    """`estimate` for a model whose header is already read (settings: `estimate`'s)."""
    return estimate(header.tensor_bytes, kv_layout(header), ctx, **settings)


def format_bytes(n_bytes: int | None) -> str:
    """A size as people read it: "1.53 GiB", "655.5 MiB", "12.0 KiB" (None: "unknown")."""
    if n_bytes is None:
        return "unknown"
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n_bytes >= scale:
            return f"{n_bytes / scale:,.{2 if unit == 'GiB' else 1}f} {unit}"
    return f"{n_bytes} B"


def model_memory(
    path: Path,
    ctx: int,
    kv_type_k: str = "f16",
    kv_type_v: str | None = None,
    swa_full: bool = False,
    **settings: Any,
) -> Memory:
    """The memory of the GGUF at `path` (all parts of a split one) at `ctx` tokens.

    Raises:
        ModelFileError: the file is unreadable, or its KV cache cannot be sized (the reason).
        UsageError: see `estimate`.
    """
    header = read_header(path)
    try:
        return header_memory(
            header, ctx, kv_type_k=kv_type_k, kv_type_v=kv_type_v, swa_full=swa_full, **settings
        )
    except ModelFileError as exc:
        raise ModelFileError(f"{path}: {exc}") from None


def memory_or_reason(
    header: GgufHeader, ctx: int, **settings: Any
) -> tuple[dict[str, Any] | None, str | None]:
    """(`Memory.to_json()`, None), or (None, why) when the cache cannot be sized: what a report's
    model entry carries as `memory` and `memory_unknown`."""
    try:
        return header_memory(header, ctx, **settings).to_json(), None
    except (ModelFileError, UsageError) as exc:
        return None, str(exc)

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
only known after llama.cpp plans the graph, so it is None here (see docs/memory.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ggflip.errors import ModelFileError, UsageError, did_you_mean
from ggflip.gguf.header import GgufHeader, read_header

KV_TYPES = ("f32", "f16", "bf16", "q8_0", "q5_1", "q5_0", "q4_1", "q4_0", "iq4_nl")
"""The cache types llama.cpp's `-ctk`/`-ctv` accept."""
DEFAULT_N_UBATCH = 512  # llama.cpp's default n_ubatch
_CELL_PAD = 256
# llama.cpp's `load_swa_pattern(ml, n)` default for architectures whose GGUF gives a window but
# no pattern: layer il slides when il % n < n - 1 (src/models/<arch>.cpp).
_SWA_PERIOD = {"gemma2": 2, "gemma3": 6, "cohere2": 4, "gpt-oss": 2}
# Metadata that marks a cache this module does not model (recurrent/hybrid state, MLA, shared KV).
_UNMODELLED = {
    ".ssm.": "a recurrent (SSM) state",
    ".wkv.": "an RWKV state",
    ".shortconv.": "a short-convolution state",
    ".attention.kv_lora_rank": "multi-head latent attention",
    ".attention.shared_kv_layers": "KV shared between layers",
}


def _pad(value: int, to: int = _CELL_PAD) -> int:
    return (value + to - 1) // to * to


@dataclass(frozen=True)
class KvLayout:
    """The GGUF's own dimensions that size a KV cache, one entry a layer.

    `n_embd_k_gqa[il]`/`n_embd_v_gqa[il]` are the K and V widths of one cell of layer il (head
    size x KV heads; 0: the layer caches nothing), `head_k`/`head_v` the largest K and V head
    sizes (a quantized cache type's block must divide them); `swa_layers[il]` says whether
    layer il attends over a sliding window of `n_swa` tokens. `unknown_reason` is set when the
    cache cannot be sized from the file; the other fields are then not meaningful.
    """

    architecture: str
    n_embd_k_gqa: tuple[int, ...] = ()
    n_embd_v_gqa: tuple[int, ...] = ()
    swa_layers: tuple[bool, ...] = ()
    head_k: int = 0
    head_v: int = 0
    n_swa: int = 0
    n_ctx_train: int | None = None
    unknown_reason: str | None = None

    @property
    def known(self) -> bool:
        """Whether the cache can be sized from this layout."""
        return self.unknown_reason is None

    @property
    def n_layer(self) -> int:
        return len(self.n_embd_k_gqa)

    @property
    def has_swa(self) -> bool:
        """Whether llama.cpp builds a separate sliding-window cache for this model."""
        return self.n_swa > 0 and any(self.swa_layers)

    def to_json(self) -> dict[str, Any]:
        """A JSON object that `from_json` turns back into this layout."""
        return {
            "architecture": self.architecture,
            "n_embd_k_gqa": list(self.n_embd_k_gqa),
            "n_embd_v_gqa": list(self.n_embd_v_gqa),
            "swa_layers": [int(flag) for flag in self.swa_layers],
            "head_k": self.head_k,
            "head_v": self.head_v,
            "n_swa": self.n_swa,
            "n_ctx_train": self.n_ctx_train,
            "unknown_reason": self.unknown_reason,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> KvLayout:
        """The layout a `to_json` object describes (as stored in a report)."""
        return cls(
            architecture=str(data["architecture"]),
            n_embd_k_gqa=tuple(int(v) for v in data["n_embd_k_gqa"]),
            n_embd_v_gqa=tuple(int(v) for v in data["n_embd_v_gqa"]),
            swa_layers=tuple(bool(v) for v in data["swa_layers"]),
            head_k=int(data.get("head_k", 0)),
            head_v=int(data.get("head_v", 0)),
            n_swa=int(data.get("n_swa", 0)),
            n_ctx_train=data.get("n_ctx_train"),
            unknown_reason=data.get("unknown_reason"),
        )


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


def _per_layer(value: Any, n_layer: int, name: str) -> tuple[int, ...]:
    """A hyperparameter given as one number or one number a layer, as one a layer."""
    if isinstance(value, list):
        if len(value) != n_layer:
            raise ValueError(f"{name} has {len(value)} entries for {n_layer} layers")
        return tuple(int(v) for v in value)
    return (int(value),) * n_layer


def _swa_layers(header: GgufHeader, n_layer: int) -> tuple[int, tuple[bool, ...]]:
    """The window and llama.cpp's per-layer sliding-window flags (set_swa_pattern)."""
    arch, hp = header.architecture, header.hparams
    n_swa = int(hp.get(f"{arch}.attention.sliding_window") or 0)
    pattern = hp.get(f"{arch}.attention.sliding_window_pattern")
    if n_swa <= 0:
        return 0, (False,) * n_layer
    if isinstance(pattern, list):
        return n_swa, tuple(bool(v) for v in _per_layer(pattern, n_layer, "sliding_window_pattern"))
    if arch not in _SWA_PERIOD:
        raise ValueError(
            f"a sliding window of {n_swa} on architecture '{arch}', whose layer pattern in "
            "llama.cpp ggflip does not know"
        )
    period = int(pattern) if isinstance(pattern, int) else _SWA_PERIOD[arch]
    return n_swa, tuple(period == 0 or il % period < period - 1 for il in range(n_layer))


def _layout(header: GgufHeader) -> KvLayout:
    arch, hp = header.architecture, header.hparams
    for marker, what in _UNMODELLED.items():
        if any(marker in key for key in hp):
            raise ValueError(f"architecture '{arch}' keeps {what}, which ggflip does not size")
    n_layer = int(hp[f"{arch}.block_count"])
    n_embd = int(hp[f"{arch}.embedding_length"])
    n_head = _per_layer(hp[f"{arch}.attention.head_count"], n_layer, "head_count")
    kv_heads = hp.get(f"{arch}.attention.head_count_kv")
    n_head_kv = n_head if kv_heads is None else _per_layer(kv_heads, n_layer, "head_count_kv")
    head_k = int(hp.get(f"{arch}.attention.key_length", n_embd // max(n_head[0], 1)))
    head_v = int(hp.get(f"{arch}.attention.value_length", n_embd // max(n_head[0], 1)))
    head_k_swa = int(hp.get(f"{arch}.attention.key_length_swa", head_k))
    head_v_swa = int(hp.get(f"{arch}.attention.value_length_swa", head_v))
    n_swa, swa = _swa_layers(header, n_layer)
    return KvLayout(
        architecture=arch,
        n_embd_k_gqa=tuple((head_k_swa if s else head_k) * h for s, h in zip(swa, n_head_kv)),
        n_embd_v_gqa=tuple((head_v_swa if s else head_v) * h for s, h in zip(swa, n_head_kv)),
        swa_layers=swa,
        head_k=max(head_k, head_k_swa if any(swa) else 0),
        head_v=max(head_v, head_v_swa if any(swa) else 0),
        n_swa=n_swa,
        n_ctx_train=header.context_length,
    )


def kv_layout(header: GgufHeader) -> KvLayout:
    """The KV-cache dimensions of a model from its header; marked unknown (with the reason)
    when the file lacks them or llama.cpp's cache for it is not one this module models."""
    try:
        return _layout(header)
    except KeyError as exc:
        reason = f"the GGUF has no {exc.args[0]} key"
    except (ValueError, TypeError) as exc:
        reason = str(exc)
    return KvLayout(architecture=header.architecture, unknown_reason=reason)


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
            the model's cache rows.
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
    per_cell = [
        (_row_bytes(kv_type_k, k) + _row_bytes(kv_type_v, v), slides and layout.has_swa)
        for k, v, slides in zip(layout.n_embd_k_gqa, layout.n_embd_v_gqa, layout.swa_layers)
    ]
    full_bytes = n_stream * cells * sum(size for size, slides in per_cell if not slides)
    swa_bytes = n_stream * swa_cells * sum(size for size, slides in per_cell if slides)
    kv_bytes = full_bytes + swa_bytes
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

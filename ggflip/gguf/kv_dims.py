"""A GGUF's own dimensions that size llama.cpp's KV cache (`KvLayout`), read from its header.

Contract: `kv_layout(header)` never raises; a file lacking a dimension, or one whose cache
llama.cpp lays out in a way ggflip does not model (recurrent or hybrid state, multi-head latent
attention, KV shared between layers, a sliding window on an architecture whose layer pattern is
not known here), gets a layout marked unknown with the reason. Which layers slide follows
llama.cpp's `llama_hparams::set_swa_pattern`: a per-layer `sliding_window_pattern` array when the
file has one, else a period n (the file's or the architecture's default) where layer il slides
when il % n < n - 1. `ggflip.gguf.memory` sizes the cache from it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ggflip.gguf.header import GgufHeader

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
    window = hp.get(f"{arch}.attention.sliding_window")
    if arch == "llama4" and window is None:  # llama.cpp then uses chunked attention
        raise ValueError("llama4's chunked-attention cache, which ggflip does not size")
    n_swa = int(window or 0)
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

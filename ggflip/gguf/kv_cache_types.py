"""The KV-cache element types llama.cpp accepts (`-ctk`/`-ctv`, `type_k`/`type_v`), by name.

`KV_CACHE_TYPES` maps each name, as llama.cpp's `--cache-type-k` spells it, to its ggml type
number (the `ggml_type` enum, which llama.cpp's context parameters take). It lives below the
configuration and backend layers so that models.toml's parser can refuse an unknown name, the
llama.cpp backend can pass the number, and a memory estimate can size the cache, from one table.

A quantized V cache needs flash attention in llama.cpp (without it the context is refused), so
`QUANTIZED_NEEDS_FLASH_ATTN` is the one sentence that says so wherever the rule is checked.
"""

from __future__ import annotations

from collections.abc import Mapping

from ggflip.errors import did_you_mean

KV_CACHE_TYPES: Mapping[str, int] = {
    "f32": 0,
    "f16": 1,
    "bf16": 30,
    "q8_0": 8,
    "q5_1": 7,
    "q5_0": 6,
    "q4_1": 3,
    "q4_0": 2,
    "iq4_nl": 20,
}
"""KV-cache type name -> ggml type number (ggml.h's `enum ggml_type`)."""

UNQUANTIZED_KV_TYPES = frozenset({"f32", "f16", "bf16"})
"""The KV-cache types that are plain floats (any attention kernel takes them)."""

QUANTIZED_NEEDS_FLASH_ATTN = "llama.cpp quantizes the V cache only with flash attention"


def kv_type_error(name: object) -> str | None:
    """Why `name` is not a KV-cache type (one line naming the valid ones), or None when it is."""
    if isinstance(name, str) and name in KV_CACHE_TYPES:
        return None
    hint = did_you_mean(str(name).lower(), KV_CACHE_TYPES) if isinstance(name, str) else ""
    return f"unknown KV-cache type {name!r}{hint} (valid: {', '.join(KV_CACHE_TYPES)})"


def kv_settings_error(type_v: str, flash_attn: bool) -> str | None:
    """Why a V-cache type cannot run with this flash-attention setting, or None when it can."""
    if type_v in UNQUANTIZED_KV_TYPES or flash_attn:
        return None
    return (
        f"type_v = {type_v} needs flash_attn = true ({QUANTIZED_NEEDS_FLASH_ATTN}); set it, "
        "or keep type_v at f16"
    )

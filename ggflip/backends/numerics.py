"""What a baseline's numbers depend on beyond its file and inputs: llama settings and the build.

Every mode keys its baseline cache with `baseline_numerics` and prints the same mapping in its
report, so a cached baseline is reused only when it would come out the same, and a reader knows
how it was computed.

A llama setting enters the key when it can change a logit:

* `n_ctx`, `n_batch`, `n_ubatch`, `n_seq_max`: how tokens and sequences are grouped into
  decodes and ubatches, which changes the order of the sums in the matmuls and in the attention
  softmax (on Gemma 3 270M F16, regrouping moves logits by up to ~0.02);
* `flash_attn`: another attention kernel;
* `n_gpu_layers`, `main_gpu`, `tensor_split`, `rpc_servers`: which device (and which kernels)
  computes each layer;
* `repack`: CPU weight repacking selects other SIMD kernels for quantized weights;
* `type_k`, `type_v`: the KV cache's element types (`f16`, `q8_0`, `q4_0`, ...,
  `ggflip.gguf.kv_cache_types`): a quantized cache rounds every key and value it stores;
* `offload_kqv`, `op_offload` (with GPU layers: where the KV cache and attention, and the ops on
  host weights, run) and `swa_full` (the sliding-window layers' cache size, which changes which
  cells a decode attends over and how they are laid out);
* `kv_unified`: one KV cache all sequences share (each token's attention runs over every
  sequence's cells under a mask, and ubatches are split another way) or a stream per sequence;
  the choice engine turns it off for runs that share no prefix (`ggflip.choice.spec.kv_layout`).

The settings added with the KV cache and `kv_unified` (`LATER_SETTINGS`) enter a key only when
they differ from their defaults, so a baseline cached before they existed (at those defaults)
keeps its key.

Two settings are left out, because they cannot change a result:

* `n_threads`: ggml splits each operation's output rows among the threads, and every output
  value is computed by one thread in the same order, whatever the count (tested on the real
  model: the logits are bit-identical with 1 and 2 threads);
* `use_mmap`: how the weights are read from the file, not what they are.

The llama.cpp build (`BackendFactory.build_info`: library version, compiled CPU features,
devices) enters too: another build may carry other kernels.

Modes never read these settings themselves: they ask the backend factory
(`BackendFactory.baseline_numerics`, `numeric_settings`, `scoring_workers`). `LlamaSettingsFactory`
answers from `ModelSpec.llama` for every factory whose models run with llama settings.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from ggflip.backends.threads import scoring_workers
from ggflip.config.models_toml import LlamaSettings, ModelSpec

LATER_SETTINGS: tuple[str, ...] = (
    "type_k",
    "type_v",
    "offload_kqv",
    "op_offload",
    "swa_full",
    "kv_unified",
)
"""The settings of `NUMERIC_SETTINGS` that key a baseline only when not at their defaults."""

NUMERIC_SETTINGS: tuple[str, ...] = (
    "n_ctx",
    "n_batch",
    "n_ubatch",
    "n_seq_max",
    "flash_attn",
    "n_gpu_layers",
    "main_gpu",
    "tensor_split",
    "rpc_servers",
    "repack",
    *LATER_SETTINGS,
)
"""The llama settings that can change a logit, so they key a cached baseline."""

_DEFAULTS = dataclasses.asdict(LlamaSettings())

EXCLUDED_SETTINGS: Mapping[str, str] = {
    "n_threads": "each output value is computed by one thread, in the same order for any count",
    "use_mmap": "how the weights are read, not what they are",
}
"""The llama settings that cannot change a logit, with why."""


def numeric_settings(settings: LlamaSettings) -> dict[str, Any]:
    """The settings of `NUMERIC_SETTINGS` as plain JSON values (those of `LATER_SETTINGS` only
    when they differ from their defaults)."""
    values = dataclasses.asdict(settings)
    return {
        name: _plain(values[name])
        for name in NUMERIC_SETTINGS
        if name not in LATER_SETTINGS or values[name] != _DEFAULTS[name]
    }


def baseline_numerics(settings: LlamaSettings, build: Mapping[str, Any]) -> dict[str, Any]:
    """The llama settings that enter a baseline key, and the llama.cpp build.

    Args:
        settings: the llama settings the baseline is (or would be) computed with, as the mode
            passes them to `BackendFactory.open` (corpus mode sizes n_ctx to one chunk first).
        build: the factory's `build_info()`.

    Returns:
        `{"llama": {setting: value}, "build": {...}}`, JSON-serializable: put it in the cache
        key and in the report.
    """
    return {"llama": numeric_settings(settings), "build": dict(build)}


class LlamaSettingsFactory:
    """What a factory whose models run with their `ModelSpec.llama` settings says about its
    numbers and threads; the llama.cpp and fake factories share it (`BackendFactory`'s methods)."""

    display_name = "llama.cpp"

    def build_info(self) -> dict[str, Any]:
        """Identifies the library computing the logits (each factory says its own)."""
        raise NotImplementedError

    def baseline_numerics(self, spec: ModelSpec) -> dict[str, Any]:
        """`baseline_numerics` of the model's llama settings and this factory's build."""
        return baseline_numerics(spec.llama, self.build_info())

    def numeric_settings(self, spec: ModelSpec) -> dict[str, Any]:
        """`numeric_settings` of the model's llama settings."""
        return numeric_settings(spec.llama)

    def scoring_workers(self, requested: int | None, spec: ModelSpec) -> int:
        """`threads.scoring_workers` beside llama.cpp's threads for this model."""
        return scoring_workers(requested, spec.llama)

    def describe(self, spec: ModelSpec, role: str) -> str:
        """One line of the settings the model runs with, for a setup view."""
        s = spec.llama
        return (
            f"{self.display_name} ({role}): n_ctx {s.n_ctx} · n_batch {s.n_batch} · n_ubatch "
            f"{s.n_ubatch} · threads {s.n_threads or 'all'} · gpu layers {s.n_gpu_layers} · "
            f"flash_attn {'on' if s.flash_attn else 'off'} · mmap {'on' if s.use_mmap else 'off'} "
            f"· n_seq_max {s.n_seq_max}"
            + ("" if s.type_k == s.type_v == "f16" else f" · KV cache K {s.type_k} V {s.type_v}")
        )


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value

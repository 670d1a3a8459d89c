"""How models are labelled: by file name (`short_labels`) and by what their llama settings change
against the baseline's (`settings_label`, `F16 · KV q8_0`).

The report of every mode states, per quant, `settings_diff(baseline, quant)`; a model without a
label of its own gets `settings_label` (`F16 · KV q8_0`) when its settings differ from the
baseline's. Works on any settings dataclass (`models_toml.LlamaSettings`), so the parser can
use it without an import cycle.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

_NAMES = {
    "flash_attn": "flash attn",
    "n_gpu_layers": "GPU layers",
    "rpc_servers": "RPC",
    "tensor_split": "split",
    "offload_kqv": "KV offload",
    "op_offload": "op offload",
    "swa_full": "SWA full",
}

NUMERICS_MARK = "(other numerics)"
"""Marks a quant compared against a baseline pack computed with other numerics (another llama.cpp
build or settings, `--allow-numerics-mismatch`): every row of it in every report carries it."""


_NOT_IN_LABEL = frozenset({"n_threads", "use_mmap"})
"""Settings that change how fast a model runs, not its numbers: stated, never in a label."""


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def settings_diff(base: Any, other: Any) -> dict[str, Any]:
    """Every llama setting of `other` that differs from `base`'s, as plain JSON values, in the
    settings' order."""
    mine, theirs = dataclasses.asdict(base), dataclasses.asdict(other)
    return {name: _plain(theirs[name]) for name in mine if mine[name] != theirs[name]}


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, list):
        return ",".join(str(v) for v in value) or "none"
    return str(value)


def describe_diff(diff: Mapping[str, Any]) -> str:
    """The differences as a short label part: `KV q8_0` (K and V alike), `K q8_0 · V q4_0`,
    `flash attn on`, `GPU layers 99`, ...; "" when nothing differs."""
    parts = []
    rest = dict(diff)
    if "type_k" in rest and rest.get("type_k") == rest.get("type_v"):
        parts.append(f"KV {rest.pop('type_k')}")
        rest.pop("type_v")
    for key, prefix in (("type_k", "K"), ("type_v", "V")):
        if key in rest:
            parts.append(f"{prefix} {rest.pop(key)}")
    parts += [f"{_NAMES.get(name, name)} {_show(value)}" for name, value in rest.items()]
    return " · ".join(parts)


def settings_label(label: str, base: Any, other: Any) -> str:
    """`label` followed by what `other` changes against `base` (`F16 · KV q8_0`)."""
    diff = settings_diff(base, other)
    described = describe_diff({k: v for k, v in diff.items() if k not in _NOT_IN_LABEL})
    return f"{label} · {described}" if described else label


def uploader(name: str) -> str:
    """Who a model file comes from: the owner of an `hf://owner/repo/...` reference, else the name
    of the folder holding the file."""
    if name.startswith("hf://"):
        return name.removeprefix("hf://").split("/", 1)[0]
    return Path(name).expanduser().absolute().parent.name


def short_labels(names: Sequence[str]) -> list[str]:
    """File names without `.gguf` and without their common prefix (cut at a `-`, `_` or `.`);
    names that still collide carry their uploader (`Q4_K_M (bartowski)`, `Q4_K_M (unsloth)`:
    `uploader`), and what collides after that is numbered (`m`, `m (2)`)."""
    stems = [Path(name).name.removesuffix(".gguf") for name in names]
    prefix = os.path.commonprefix(stems) if len(stems) > 1 else ""
    cut = max(prefix.rfind(sep) for sep in "-_.") + 1
    shortened = [stem[cut:] for stem in stems]
    if cut <= 0 or any(not s for s in shortened):
        shortened = stems
    owners = [uploader(name) for name in names]
    for label in {s for s in shortened if shortened.count(s) > 1}:
        group = [i for i, s in enumerate(shortened) if s == label]
        if len({owners[i] for i in group}) > 1:
            for i in group:
                shortened[i] = f"{label} ({owners[i]})"
    seen: dict[str, int] = {}
    unique = []
    for label in shortened:
        seen[label] = seen.get(label, 0) + 1
        unique.append(label if seen[label] == 1 else f"{label} ({seen[label]})")
    return unique

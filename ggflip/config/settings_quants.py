"""A quant is a file plus settings: what a model's llama settings change against the baseline's.

A set may list the baseline's own file again under other llama settings (a quantized KV cache,
flash attention, GPU layers, an RPC server): each is compared like any quant file, labelled by
what differs (`ggflip.config.labels`). This module builds such quants from the command line
(`with_settings_quants`: `--quant-settings type_k=q8_0,type_v=q8_0,flash_attn=on`), with the
same checks as models.toml.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ggflip.config.labels import settings_label
from ggflip.config.models_toml import ModelSet, ModelSpec, parse_llama_table
from ggflip.errors import ConfigError, UsageError


def parse_settings_text(text: str) -> dict[str, Any]:
    """`type_k=q8_0,type_v=q8_0,flash_attn=on` as TOML-typed values: integers, booleans
    (true/false/on/off), `3:1` for tensor_split, `host:port;host:port` for rpc_servers, else
    strings.

    Raises:
        UsageError: an item without `=`.
    """
    values: dict[str, Any] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        name, sep, raw = item.partition("=")
        if not sep or not name.strip():
            raise UsageError(
                f"--quant-settings {text!r}: expected NAME=VALUE items separated by commas "
                f"(e.g. type_k=q8_0,type_v=q8_0,flash_attn=on), got {item!r}"
            )
        values[name.strip()] = _typed(name.strip(), raw.strip())
    return values


def _typed(name: str, raw: str) -> Any:
    if name == "tensor_split":
        return [float(v) if _is_number(v) else v for v in raw.split(":")]
    if name == "rpc_servers":
        return [v for v in raw.split(";") if v]
    lowered = raw.lower()
    if lowered in ("true", "on", "yes"):
        return True
    if lowered in ("false", "off", "no"):
        return False
    if raw.lstrip("-").isdigit():
        return int(raw)
    return raw


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def with_settings_quants(model_set: ModelSet, settings_texts: Sequence[str]) -> ModelSet:
    """The set with one more quant per `--quant-settings` text: the baseline's file under the
    baseline's settings changed as the text says, labelled by what differs.

    Raises:
        UsageError: a malformed text, an unknown setting or value (one line naming the valid
            ones), a quantized V cache without flash attention, or settings equal to the
            baseline's.
    """
    quants = list(model_set.quants)
    base = model_set.baseline
    for text in settings_texts:
        try:
            llama = parse_llama_table(parse_settings_text(text), base.llama, "--quant-settings")
        except ConfigError as exc:
            raise UsageError(str(exc)) from None
        label = settings_label(base.label, base.llama, llama)
        if label == base.label:
            raise UsageError(f"--quant-settings {text!r}: the baseline's own settings, not a quant")
        if any(q.label == label for q in quants):
            raise UsageError(f"--quant-settings {text!r}: a quant labelled '{label}' is listed")
        quants.append(ModelSpec(label=label, path=Path(base.path), llama=llama, ref=base.ref))
    return dataclasses.replace(model_set, quants=tuple(quants))

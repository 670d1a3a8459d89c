"""The baseline a pack stands for: its facts in the manifest, and the factory that serves them.

`baseline_facts` writes what a run needs to know about the baseline model without opening it
(its `ModelProbe`, label, path, llama settings, file digests, the numerics its record was
computed with); `PackFactory` wraps the run's real `BackendFactory` so that the baseline's
`probe()` and `baseline_numerics()` answer from the pack and its `open()` is never reached, while
the quants go to the real factory. Every engine then runs unchanged and finds the baseline's
record in the cache, where the pack installed it under the same key.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ggflip import __version__
from ggflip.backends.base import Backend, BackendFactory, ModelProbe
from ggflip.backends.registry import backend_factory
from ggflip.config.from_files import model_set_from_files
from ggflip.config.labels import NUMERICS_MARK
from ggflip.config.models_toml import LlamaSettings, ModelSet, ModelSpec, load_models_toml
from ggflip.config.resolve import choose_set_name, resolve_model_set
from ggflip.errors import BackendError, PackError, UsageError
from ggflip.gguf.header import scan_gguf
from ggflip.gguf.hf import PREFIX, resolve_hf
from ggflip.packs.archive import Pack, read_pack
from ggflip.store.keys import cache_key
from ggflip.store.reading import file_sha256

log = logging.getLogger("ggflip.packs")


def gguf_tokenizer_digest(path: Path) -> str | None:
    """A digest of a GGUF's whole tokenizer: every `tokenizer.*` key (vocabulary, scores, token
    types, merges, special token ids, pre-tokenizer, add-BOS flags) but the chat template, which
    the manifest digests on its own; None for a model that is not a GGUF (the fake backend's).

    Raises:
        ModelFileError: a GGUF whose header is truncated or corrupt.
    """
    try:
        with path.open("rb") as handle:
            if handle.read(4) != b"GGUF":
                return None
    except OSError:
        return None
    fields = scan_gguf(
        path, lambda key: key.startswith("tokenizer.") and key != "tokenizer.chat_template"
    ).fields
    digest = hashlib.sha256()
    for key in sorted(fields):
        if key.startswith("tokenizer."):
            digest.update(key.encode() + b"\x00" + repr(fields[key]).encode() + b"\x00")
    return digest.hexdigest()[:16]


def baseline_facts(
    model: ModelSpec, probe: ModelProbe, factory: BackendFactory, numerics_model: ModelSpec
) -> dict[str, Any]:
    """The manifest's `baseline`: enough to rebuild the model's spec and probe, and to check a
    quant's tokenizer and the numerics of the machine that reads the pack.

    Args:
        numerics_model: the spec the mode asks `factory.baseline_numerics` about (corpus mode
            sizes the context to one chunk).
    """
    is_file = model.path.is_file()
    return {
        "label": model.label,
        "path": str(model.path),
        "file": model.path.name,
        "size": model.path.stat().st_size if is_file else None,
        "sha256": file_sha256(model.path) if is_file else None,
        "tokenizer_digest": gguf_tokenizer_digest(model.path),
        "chat_template_digest": probe.chat_template_digest,
        "probe": dataclasses.asdict(probe),
        "llama": dataclasses.asdict(model.llama),
        "numerics_llama": dataclasses.asdict(numerics_model.llama),
        "numerics": factory.baseline_numerics(numerics_model),
    }


def _settings(values: Mapping[str, Any]) -> LlamaSettings:
    fields: dict[str, Any] = {
        name: tuple(v) if isinstance(v, list) else v for name, v in values.items()
    }
    return LlamaSettings(**fields)


def baseline_spec(facts: Mapping[str, Any]) -> ModelSpec:
    """The pack's baseline as a model spec (its path is where it was; nothing opens it)."""
    return ModelSpec(str(facts["label"]), Path(str(facts["path"])), _settings(facts["llama"]))


def baseline_probe(facts: Mapping[str, Any]) -> ModelProbe:
    """The pack's baseline's probe, as the exporting machine read it."""
    return ModelProbe(**facts["probe"])


def differences(ours: Any, theirs: Any, prefix: str = "") -> list[str]:
    """Where two JSON values differ, as `path: ours != theirs` (nested mappings walked)."""
    if isinstance(ours, Mapping) and isinstance(theirs, Mapping):
        found: list[str] = []
        for name in sorted(set(ours) | set(theirs)):
            found += differences(ours.get(name), theirs.get(name), f"{prefix}{name}.")
        return found
    if json.dumps(ours, sort_keys=True) == json.dumps(theirs, sort_keys=True):
        return []
    return [f"{prefix.rstrip('.')}: {_short(ours)} here, {_short(theirs)} in the pack"]


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= 40 else text[:37] + "..."


class PackFactory:
    """A `BackendFactory` whose baseline is a pack's: the baseline's probe and numerics come from
    the pack, the quants go to `inner`.

    Args:
        model_set: the run's models; the quants run with its backend's factory
            (`backends.registry.backend_factory`).
        facts: the manifest's `baseline` (`baseline_facts`).
        allow_mismatch: serve the pack's numerics even where this build would compute the
            baseline otherwise (`numerics_mismatch` lists how).

    Raises:
        PackError: (constructing) the numerics differ and `allow_mismatch` is off.
    """

    def __init__(
        self, model_set: ModelSet, facts: Mapping[str, Any], allow_mismatch: bool = False
    ) -> None:
        self.inner = backend_factory(model_set)
        self.baseline = model_set.baseline
        self._probe = baseline_probe(facts)
        self._numerics = dict(facts["numerics"])
        self.numerics_mismatch: list[str] = []
        if facts.get("numerics_llama") is not None:  # None: another tool computed the baseline
            numerics_model = dataclasses.replace(
                self.baseline, llama=_settings(facts["numerics_llama"])
            )
            local = self.inner.baseline_numerics(numerics_model)
            self.numerics_mismatch = differences(local, self._numerics)
        if self.numerics_mismatch and not allow_mismatch:
            raise PackError(
                f"the pack's baseline was computed with other numerics ({self.numerics_mismatch[0]}"
                f"{' and more' if len(self.numerics_mismatch) > 1 else ''}); run where they "
                "match, or pass --allow-numerics-mismatch to compare anyway"
            )

    def _is_baseline(self, spec: ModelSpec) -> bool:
        return spec.label == self.baseline.label and spec.path == self.baseline.path

    def build_info(self) -> dict[str, Any]:
        return self.inner.build_info()

    def probe(self, spec: ModelSpec) -> ModelProbe:
        return self._probe if self._is_baseline(spec) else self.inner.probe(spec)

    def open(self, spec: ModelSpec) -> Backend:
        if self._is_baseline(spec):
            raise BackendError(
                f"internal error: the pack's baseline {spec.label} was asked to load; its record "
                "should have come from the pack (report this)"
            )
        return self.inner.open(spec)

    def baseline_numerics(self, spec: ModelSpec) -> dict[str, Any]:
        if self._is_baseline(spec):
            return dict(self._numerics)
        return self.inner.baseline_numerics(spec)

    def numeric_settings(self, spec: ModelSpec) -> dict[str, Any]:
        return self.inner.numeric_settings(spec)

    def scoring_workers(self, requested: int | None, spec: ModelSpec) -> int:
        return self.inner.scoring_workers(requested, spec)

    def describe(self, spec: ModelSpec, role: str) -> str:
        return self.inner.describe(spec, role)


def pack_factory(
    model_set: ModelSet, facts: Mapping[str, Any], allow_mismatch: bool
) -> tuple[ModelSet, PackFactory]:
    """The run's models and its `PackFactory`; under `allow_mismatch` with numerics that differ,
    every quant's label carries `NUMERICS_MARK`, so every row of every report says so (and a
    warning on stderr says how they differ).

    Raises:
        PackError: the numerics differ and `allow_mismatch` is off.
    """
    factory = PackFactory(model_set, facts, allow_mismatch)
    if not factory.numerics_mismatch:
        return model_set, factory
    log.warning(
        "the pack's baseline was computed with other numerics (%s); comparing anyway, every "
        "quant marked %s",
        "; ".join(factory.numerics_mismatch),
        NUMERICS_MARK,
    )
    quants = tuple(
        dataclasses.replace(quant, label=f"{quant.label} {NUMERICS_MARK}")
        for quant in model_set.quants
    )
    model_set = dataclasses.replace(model_set, quants=quants)
    return model_set, PackFactory(model_set, facts, allow_mismatch)


def check_quant_tokenizers(facts: Mapping[str, Any], quants: tuple[ModelSpec, ...]) -> None:
    """Refuse a quant whose tokenizer (vocabulary, merges, special tokens, pre-tokenizer) is not
    the pack's baseline's.

    Raises:
        PackError: naming the quant.
    """
    expected = facts.get("tokenizer_digest")
    if expected is None:
        return
    for quant in quants:
        found = gguf_tokenizer_digest(quant.path)
        if found is not None and found != expected:
            raise PackError(
                f"{quant.path}: its tokenizer (vocabulary, merges, special tokens or "
                f"pre-tokenizer) differs from the pack's baseline {facts['file']}; compare "
                "quants of that model"
            )


def manifest_head(
    mode: str,
    model_set: ModelSet,
    probe: ModelProbe,
    factory: BackendFactory,
    numerics_model: ModelSpec,
    parts: Mapping[str, Any],
) -> dict[str, Any]:
    """What every mode's manifest starts with: the mode, the version that wrote it, the set's
    name and backend, the baseline's facts and the cache key's parts."""
    return {
        "mode": mode,
        "ggflip_version": __version__,
        "set": model_set.name,
        "backend": model_set.backend,
        "baseline": baseline_facts(model_set.baseline, probe, factory, numerics_model),
        "key": dict(parts),
        "cache_key": cache_key(parts),
    }


def pack_model_set(
    pack: Pack,
    quants: Sequence[str],
    models_path: Path,
    set_name: str | None,
    quant_settings: Sequence[str] = (),
    baseline: str | None = None,
) -> ModelSet:
    """The run's models with the pack's baseline: `quants` (files, folders, globs, hf://, run
    with the baseline's llama settings), or a models.toml set whose baseline the pack replaces.

    Raises:
        UsageError: both given, a `--baseline` too, or `--quant-settings` (it needs the
            baseline's file);
            ConfigError, ModelFileError: as `load_models_toml` and `resolve_model_set`.
    """
    base = baseline_spec(pack.manifest["baseline"])
    if baseline is not None:
        raise UsageError("--baseline and --baseline-pack are alternatives: give one")
    if quant_settings:
        raise UsageError(
            "--quant-settings runs the baseline's own file; it cannot come from a pack"
        )
    if quants and set_name is not None:
        raise UsageError("--set and --quant are alternatives: use a models.toml set or name files")
    if quants:
        files = model_set_from_files(str(base.path), quants, base.llama)
        # the baseline's label as a run naming these files gives it
        base = dataclasses.replace(base, label=files.baseline.label)
        model_set = dataclasses.replace(files, baseline=base, backend=pack.manifest["backend"])
    else:
        config = load_models_toml(models_path)
        # the set's own baseline entry (label, path, settings) stands for the pack's
        model_set = config.get_set(choose_set_name(config, set_name, models_path))
    return resolve_model_set(model_set)


def install_pack(pack: Pack, cache_dir: Path | None, quants: Sequence[ModelSpec]) -> None:
    """Check the quants' tokenizers against the pack's baseline, then put the pack's entry into
    the cache, where the mode's engine finds it under its key.

    Raises:
        UsageError: no cache (`--no-cache`); PackError: a tokenizer differs, or the pack is
            damaged.
    """
    if cache_dir is None:
        raise UsageError(
            "--baseline-pack installs the pack's baseline into the cache; drop --no-cache"
        )
    check_quant_tokenizers(pack.manifest["baseline"], tuple(quants))
    pack.install(cache_dir)


def open_mode_pack(ref: str, mode: str) -> Pack:
    """The pack a run names (a path or `hf://owner/repo/file`), verified, of `mode`.

    Raises:
        PackError: not a pack, damaged, or of another mode; ModelFileError: an hf:// reference
            that cannot be fetched.
    """
    pack = open_pack_ref(ref)
    if pack.mode != mode:
        raise PackError(
            f"{ref}: a pack of a {MODE_WORDS.get(pack.mode, pack.mode)} baseline, not of a "
            f"{MODE_WORDS[mode]} one; use it with `{MODE_COMMANDS.get(pack.mode, '?')}`"
        )
    return pack


def open_pack_ref(ref: str, verify: bool = True) -> Pack:
    """`archive.read_pack` of a path or an `hf://owner/repo[@revision]/file` reference (fetched
    once into the Hugging Face cache, as models are).

    Raises:
        PackError: not a pack, or damaged; ModelFileError: a reference that cannot be fetched.
    """
    path = resolve_hf(ref, suffix="") if ref.startswith(PREFIX) else Path(ref).expanduser()
    return read_pack(path, verify=verify)


MODE_WORDS = {"choice": "multiple-choice", "corpus": "corpus (kld)", "generate": "generation"}
MODE_COMMANDS = {
    "choice": "ggflip run",
    "corpus": "ggflip kld",
    "generate": "ggflip run --task <its generation task>",
}


def check_key(parts: Mapping[str, Any], manifest: Mapping[str, Any]) -> None:
    """Refuse a run whose baseline key is not the pack's: its questions, text or settings
    differ, so the pack's record does not stand for its baseline.

    Raises:
        PackError: naming the first difference.
    """
    found = differences(dict(parts), manifest["key"])
    if found:
        raise PackError(
            f"this run does not match the pack's baseline ({found[0]}"
            f"{f' and {len(found) - 1} more' if len(found) > 1 else ''}); run what the pack was "
            "made from (`ggflip baseline info PACK` shows it)"
        )

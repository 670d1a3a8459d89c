"""Corpus (`ggflip kld`) baselines as packs: export a run's cache entry, run from one.

The entry is the corpus cache's folder `corpus/<key>/` (`ggflip.corpus.cache`: the chunks'
token ids, the baseline record of every scored token, the next tokens' log-probs, meta.json);
the manifest adds each text's name, source, sha256 and token and chunk counts. The texts
themselves are not in the pack: a run from it reads the token ids, so it needs neither the
baseline model nor the texts (given with `--text`, they must be the pack's).

`write_corpus_pack(out, entry_folder, manifest)` writes a pack from any complete entry folder
(one `corpus.cache.BaselineWriter.finish` published, whatever computed it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ggflip.backends.base import BackendFactory
from ggflip.config.models_toml import ModelSet
from ggflip.corpus.cache import CorpusBaseline, bytes_per_token, open_baseline
from ggflip.corpus.engine import corpus_key_parts
from ggflip.corpus.passes import sized
from ggflip.corpus.spec import KldSpec
from ggflip.corpus.texts import CorpusText, load_texts
from ggflip.errors import PackError, UsageError
from ggflip.packs.archive import Pack, write_pack
from ggflip.packs.baseline import (
    PackFactory,
    check_key,
    install_pack,
    manifest_head,
    pack_factory,
    pack_model_set,
)
from ggflip.store.keys import cache_key
from ggflip.tasks.calibration import calibration_overlap, read_calibration

MODE = "corpus"


@dataclass(frozen=True)
class PackedText(CorpusText):
    """A text known by its digest only: its tokens are in the pack."""

    digest: str = ""

    @property
    def sha256(self) -> str:
        return self.digest


def write_corpus_pack(out: Path, entry: Path, manifest: Mapping[str, Any]) -> Pack:
    """A pack of the corpus entry folder `entry` (stored as `corpus/<its folder name>/...`).

    `manifest` holds what `export_corpus` writes: `ggflip_version`, `set`, `backend`,
    `baseline` (`packs.baseline.baseline_facts`: label, path, file, size, sha256,
    `tokenizer_digest`, `chat_template_digest`, `probe` (a `ModelProbe` as a dict),
    `llama`, `numerics_llama`, `numerics`), `key` (`corpus.engine.corpus_key_parts`, whose
    `cache_key` must be the entry folder's name for a run to find it) and `cache_key`,
    `texts` (the entry meta's), `settings` (ctx, chunks, score_from, top_k, tail_samples,
    block_rows) and `counts` (texts, chunks, scored_positions, bytes_per_position); `mode` is
    set here.

    Raises:
        PackError: `entry` is not a complete, intact entry; DiskFullError, ModelFileError.
    """
    if open_baseline(entry) is None:
        raise PackError(f"{entry}: not a complete corpus baseline entry")
    files = {f"corpus/{entry.name}/{path.name}": path for path in sorted(entry.iterdir())}
    return write_pack(out, {**manifest, "mode": MODE}, files)


def export_corpus(spec: KldSpec, factory: BackendFactory, out: Path) -> Pack:
    """Write the pack of `spec`'s baseline, whose entry must be in the cache.

    Raises:
        PackError: the cache holds no entry for this baseline.
    """
    model_set = spec.model_set
    numerics_model = sized(model_set.baseline, spec.ctx)
    probe = factory.probe(numerics_model)
    top_k = min(spec.top_k, probe.n_vocab)
    parts = corpus_key_parts(spec, probe, factory, top_k)
    assert spec.cache_dir is not None
    entry = spec.cache_dir / "corpus" / cache_key(parts)
    baseline = open_baseline(entry)
    if baseline is None:
        raise PackError(f"{spec.cache_dir}: no corpus baseline entry for this run; run it first")
    manifest = {
        **manifest_head(MODE, model_set, probe, factory, numerics_model, parts),
        **corpus_manifest_body(spec, baseline, top_k),
    }
    return write_corpus_pack(out, entry, manifest)


def corpus_manifest_body(spec: KldSpec, entry: CorpusBaseline, top_k: int) -> dict[str, Any]:
    """What a corpus pack's manifest says after its head: the entry's texts, the settings that
    key the baseline, and the counts."""
    return {
        "texts": entry.meta["texts"],
        "settings": {
            "ctx": spec.ctx,
            "chunks": spec.chunks,
            "score_from": spec.score_from,
            "top_k": spec.top_k,
            "tail_samples": spec.tail_samples,
            "block_rows": spec.block_rows,
        },
        "counts": {
            "texts": len(spec.texts),
            "chunks": int(entry.tokens.shape[0]),
            "scored_positions": entry.positions.n_rows,
            "bytes_per_position": bytes_per_token(top_k, spec.tail_samples),
        },
    }


def _texts(pack: Pack, given: tuple[Path, ...]) -> tuple[CorpusText, ...]:
    stored = pack.manifest["texts"]
    if not given:
        return tuple(
            PackedText(str(t["name"]), str(t["source"]), "", str(t["sha256"])) for t in stored
        )
    texts = load_texts(given)
    if [t.sha256 for t in texts] != [t["sha256"] for t in stored]:
        names = ", ".join(str(t["name"]) for t in stored)
        raise PackError(f"{pack.path}: the texts differ from the pack's ({names}); drop --text")
    return texts


def corpus_run_from_pack(
    pack: Pack,
    spec_fields: Mapping[str, Any],
    quants: tuple[str, ...],
    models: tuple[Path, str | None, tuple[str, ...]],
    allow_numerics_mismatch: bool = False,
) -> tuple[KldSpec, PackFactory]:
    """The spec and factory of a corpus run against the pack's baseline, its entry installed.

    Args:
        spec_fields: `KldSpec` fields as given (`texts`: the `--text` paths; a missing or None
            field takes the pack's value).
        models: the models file, the set's name and `--quant-settings`.

    Raises:
        UsageError, PackError, ConfigError, ModelFileError, DataError: before anything runs.
    """
    model_set: ModelSet = pack_model_set(pack, quants, *models)
    model_set, factory = pack_factory(model_set, pack.manifest["baseline"], allow_numerics_mismatch)
    given = dict(spec_fields)
    texts = _texts(pack, tuple(given.pop("texts", ()) or ()))
    files = given.pop("calibration", ()) or ()
    if files and isinstance(texts[0], PackedText):
        raise UsageError("--calibration reads the texts: give them with --text")
    joined = "\n".join(text.text for text in texts)
    given["calibration"] = tuple(
        calibration_overlap(joined, path, read_calibration(path)) for path in files
    )
    stored = pack.manifest["settings"]
    for name in ("ctx", "chunks", "score_from", "top_k", "tail_samples", "block_rows"):
        if given.get(name) is None:
            given[name] = stored[name]
    spec = KldSpec(model_set=model_set, texts=texts, **given)
    probe = factory.probe(sized(model_set.baseline, spec.ctx))
    top_k = min(spec.top_k, probe.n_vocab)
    check_key(corpus_key_parts(spec, probe, factory, top_k), pack.manifest)
    install_pack(pack, spec.cache_dir, model_set.quants)
    return spec, factory

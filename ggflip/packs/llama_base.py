"""A llama-perplexity `--kl-divergence-base` file as a corpus baseline pack, and runs from it.

`import_llama_base` reads the file a block of rows at a time (`ggflip.corpus.llama_base`),
converts each chunk to the corpus baseline record (`ggflip.corpus.llama_import`) in a
temporary cache entry and writes a pack of it (`ggflip.packs.archive.write_pack`): a corpus pack
whose baseline facts are the file's (name, size, sha256), whose probe is a GGUF of the same
model's (vocabulary, architecture: the file names neither) and whose numerics name the tool
that computed it, so `PackFactory` does not compare them with this machine's. Its text is the
file's tokens, named by their digest (the file holds no text).

`llama_base_pack` is what `ggflip kld --llama-base FILE` runs from: the file imported once into
a pack in the cache (keyed by the file's identity, the tokenizer that reads it and the record's K
and S); the run is then `packs.corpus.corpus_run_from_pack` on it, as for any pack (the entry
installed in the cache, `PackFactory` serving the baseline's probe and numerics, `run_kld`
unchanged).
"""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ggflip import __version__
from ggflip.backends.base import ModelProbe
from ggflip.config.from_files import CLI_SET_NAME, model_set_from_files
from ggflip.config.models_toml import LlamaSettings, ModelSet, ModelSpec, load_models_toml
from ggflip.config.resolve import choose_set_name, resolve_model_set
from ggflip.corpus.cache import BaselineWriter, CorpusBaseline
from ggflip.corpus.engine import corpus_key_parts
from ggflip.corpus.llama_base import LOGPROB_CUTOFF, LlamaBaseFile
from ggflip.corpus.llama_import import Tokenizer, decoded_tokens, import_chunks, tokenizer_of
from ggflip.corpus.passes import baseline_meta
from ggflip.corpus.spec import KldSpec, text_infos
from ggflip.errors import ModelFileError, PackError, UsageError
from ggflip.gguf.header import file_identity
from ggflip.packs.archive import Pack, read_pack
from ggflip.packs.baseline import PackFactory, gguf_tokenizer_digest
from ggflip.packs.corpus import PackedText, corpus_manifest_body, write_corpus_pack
from ggflip.store.keys import cache_key

MODE = "corpus"
TOOL = "llama-perplexity --kl-divergence-base"
ChunkDone = Callable[[int, int], None]
"""Told (chunks converted, chunks in all) after each chunk."""


def _numerics(base: LlamaBaseFile) -> dict[str, Any]:
    """What computed the record, in the key's and the report's `llama`/`build` places."""
    return {
        "llama": {
            "computed_by": TOOL,
            "window_nats": base.window_nats(),
            "logprob_cutoff": LOGPROB_CUTOFF,
        },
        "build": {"tool": "llama.cpp (the build that wrote the file; not recorded in it)"},
    }


def _facts(path: Path, base: LlamaBaseFile, tokenizer: Tokenizer) -> dict[str, Any]:
    """The manifest's `baseline`: the file, and the probe of the model the tokenizer GGUF is of."""
    probe = ModelProbe(
        n_vocab=tokenizer.n_vocab,
        vocab_fingerprint=tokenizer.vocab_fingerprint,
        architecture=tokenizer.architecture,
        identity=file_identity(path),
        file_size=base.file_size,
        memory_unknown="a llama-perplexity base file: the baseline model is never loaded",
        context_length=tokenizer.context_length,
    )
    return {
        "label": path.name,
        "path": str(path),
        "file": path.name,
        "size": base.file_size,
        "sha256": None,  # filled in once every byte is read
        "tokenizer_digest": gguf_tokenizer_digest(tokenizer.path),
        "tokenizer_from": tokenizer.path.name,
        "chat_template_digest": None,
        "probe": dataclasses.asdict(probe),
        "llama": dataclasses.asdict(LlamaSettings()),
        "numerics_llama": None,  # another tool computed it: nothing here to compare
        "numerics": _numerics(base),
    }


def _spec(path: Path, base: LlamaBaseFile, digest: str, shape: tuple[int, int]) -> KldSpec:
    """The corpus run the file stands for: its chunks, one text named by its tokens' digest."""
    model = ModelSpec(path.name, path)
    text = PackedText(path.name, str(path), "", digest)
    model_set = ModelSet(CLI_SET_NAME, model, ())
    return KldSpec(model_set, (text,), ctx=base.n_ctx, top_k=shape[0], tail_samples=shape[1])


def import_llama_base(
    path: Path,
    model: Path,
    out: Path,
    shape: tuple[int, int],
    on_chunk: ChunkDone | None = None,
) -> Pack:
    """Convert a llama-perplexity base file into a corpus baseline pack at `out`.

    Args:
        path: the `--kl-divergence-base` file.
        model: a GGUF of the model that wrote it (a quant will do): its vocabulary and BOS.
        out: the pack to write (atomically).
        shape: (top K, tail draws) of the record.
        on_chunk: told the progress after each chunk.

    Raises:
        DataError: not a base file, truncated or corrupt; ModelFileError: `model` is not a GGUF;
        VocabMismatchError: their vocabulary sizes differ; DiskFullError.
    """
    base = LlamaBaseFile.open(path)
    tokenizer = tokenizer_of(model)
    base.check_vocabulary(tokenizer.n_vocab, model)
    file_digest = hashlib.sha256()
    tokens = decoded_tokens(base.tokens(file_digest), tokenizer.bos)
    top_k = min(shape[0], base.n_vocab)
    spec = _spec(path, base, hashlib.sha256(tokens.tobytes()).hexdigest(), (top_k, shape[1]))
    facts = _facts(path, base, tokenizer)
    factory = PackFactory(spec.model_set, facts)
    parts = corpus_key_parts(spec, factory.probe(spec.model_set.baseline), factory, top_k)
    key = cache_key(parts)
    root = _scratch_folder(out)
    try:
        writer = BaselineWriter(
            root, key, base.n_chunk, base.n_ctx, base.rows_per_chunk, top_k, spec.tail_samples
        )
        record_shape = (top_k, spec.tail_samples, spec.block_rows)
        for chunk, _ in import_chunks(base, writer, tokens, record_shape, file_digest):
            if on_chunk is not None:
                on_chunk(chunk + 1, base.n_chunk)
        texts = text_infos(spec, [(tokens.size, base.n_chunk)])
        entry = writer.finish(baseline_meta(spec, parts, texts, tokens.size))
        facts["sha256"] = file_digest.hexdigest()
        manifest = _manifest(spec, base, entry, facts, (parts, key))
        return write_corpus_pack(out, entry.folder, manifest)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _scratch_folder(out: Path) -> Path:
    """A temporary folder beside `out` for the entry the pack is written from.

    Raises:
        ModelFileError: it cannot be made (as `store.atomic.atomic_output` says of `out`).
    """
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=".llama-base.", dir=out.parent))
    except OSError as exc:
        raise ModelFileError(f"could not write {out}: {exc.strerror or exc}") from None


def _manifest(
    spec: KldSpec,
    base: LlamaBaseFile,
    entry: CorpusBaseline,
    facts: dict[str, Any],
    keyed: tuple[dict[str, object], str],
) -> dict[str, Any]:
    """A corpus pack's manifest for the file's record (`keyed`: the key's parts, the key)."""
    parts, key = keyed
    return {
        "mode": MODE,
        "ggflip_version": __version__,
        "set": spec.model_set.name,
        "backend": spec.model_set.backend,
        "baseline": facts,
        "key": parts,
        "cache_key": key,
        **corpus_manifest_body(spec, entry, spec.top_k),
        "imported_from": {
            "tool": TOOL,
            "file": facts["file"],
            "size": base.file_size,
            "sha256": facts["sha256"],
            "n_ctx": base.n_ctx,
            "n_vocab": base.n_vocab,
            "n_chunk": base.n_chunk,
            "window_nats": facts["numerics"]["llama"]["window_nats"],
        },
    }


Models = tuple[Path, str | None, tuple[str, ...]]
"""The models file, the set's name and `--quant-settings`, as `corpus_run_from_pack` takes them."""


def llama_base_pack(
    path: Path,
    quants: Sequence[str],
    models: Models,
    cache_dir: Path,
    shape: tuple[int, int],
    on_chunk: ChunkDone | None = None,
) -> Pack:
    """The pack of `path` in the cache (`<cache>/llama-base/`, by the file's identity, the
    tokenizer of the first quant, which reads the file's tokens, and the record's K and S),
    imported first when absent or damaged.

    Raises:
        UsageError: no quant; the errors of `import_llama_base`.
    """
    model = _first_quant(path, quants, models)
    base = LlamaBaseFile.open(path)
    top_k = min(shape[0], base.n_vocab)
    folder = cache_dir / "llama-base"
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = gguf_tokenizer_digest(model) or "none"
    out = folder / f"{file_identity(path)}-{tokenizer}-k{top_k}-s{shape[1]}.pack"
    if out.exists():
        try:
            return read_pack(out)
        except PackError:  # a damaged pack in the cache is imported again
            out.unlink(missing_ok=True)
    return import_llama_base(path, model, out, (top_k, shape[1]), on_chunk)


def _first_quant(path: Path, quants: Sequence[str], models: Models) -> Path:
    """The GGUF whose tokenizer reads the file's tokens: the first quant (resolved)."""
    models_path, set_name, _ = models
    if not quants and set_name is None and not models_path.exists():
        raise UsageError("--llama-base needs a quant to compare: --quant FILE (repeatable)")
    if quants:
        model_set = resolve_model_set(model_set_from_files(str(path), quants[:1]))
    else:
        config = load_models_toml(models_path)
        name = choose_set_name(config, set_name, models_path)
        model_set = resolve_model_set(config.get_set(name))
    if not model_set.quants:
        raise UsageError("--llama-base needs a quant to compare: --quant FILE (repeatable)")
    return model_set.quants[0].path

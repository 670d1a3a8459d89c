"""A llama-perplexity `--kl-divergence-base` file as a corpus baseline pack, and runs from it.

`import_llama_base` reads the file a block of rows at a time (`ggflip.corpus.llama_base`),
converts each chunk to the corpus baseline record (`ggflip.corpus.llama_import`) in a
temporary cache entry and writes a pack of it (`ggflip.packs.archive.write_pack`): a corpus pack
whose baseline facts are the file's (name, size, sha256), whose probe is a GGUF of the same
model's (vocabulary, architecture: the file names neither) and whose numerics name the tool
that computed it, so `PackFactory` does not compare them with this machine's. Its text is the
file's tokens, named by their digest (the file holds no text).

`llama_base_run` is `ggflip kld --llama-base FILE`: the file imported once into a pack in the
cache (keyed by the file's identity and the record's K and S), then the quants run against
that pack as against any pack: the pack's entry installed in the cache, `PackFactory` serving
the baseline's probe and numerics, `run_kld` unchanged.
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
from ggflip.config.models_toml import LlamaSettings, ModelSet, ModelSpec
from ggflip.config.resolve import resolve_model_set
from ggflip.corpus.cache import BaselineWriter, bytes_per_token
from ggflip.corpus.engine import baseline_key_parts
from ggflip.corpus.llama_base import LOGPROB_CUTOFF, LlamaBaseFile
from ggflip.corpus.llama_import import Tokenizer, decoded_tokens, import_chunks, tokenizer_of
from ggflip.corpus.passes import baseline_meta
from ggflip.corpus.setup import KldOptions
from ggflip.corpus.spec import KldSpec, text_infos
from ggflip.corpus.texts import CorpusText
from ggflip.errors import PackError, UsageError
from ggflip.gguf.header import file_identity
from ggflip.packs.archive import Pack, read_pack, write_pack
from ggflip.packs.baseline import (
    PackFactory,
    check_key,
    gguf_tokenizer_digest,
    install_pack,
    pack_model_set,
)
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
    text = CorpusText(path.name, str(path), "", digest=digest)
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
    parts = baseline_key_parts(spec, factory.probe(spec.model_set.baseline), factory, top_k)
    key = cache_key(parts)
    root = Path(tempfile.mkdtemp(prefix=".llama-base.", dir=out.parent))
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
        manifest = _manifest(spec, base, facts, parts, key)
        files = {f"corpus/{key}/{file.name}": file for file in sorted(entry.folder.iterdir())}
        return write_pack(out, manifest, files)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _manifest(
    spec: KldSpec,
    base: LlamaBaseFile,
    facts: dict[str, Any],
    parts: dict[str, object],
    key: str,
) -> dict[str, Any]:
    """A corpus pack's manifest for the file's record."""
    text = spec.texts[0]
    return {
        "mode": MODE,
        "ggflip_version": __version__,
        "set": spec.model_set.name,
        "backend": spec.model_set.backend,
        "baseline": facts,
        "key": parts,
        "cache_key": key,
        "settings": {
            "ctx": spec.ctx,
            "chunks": spec.chunks,
            "score_from": spec.score_from,
            "top_k": parts["top_k"],
            "tail_samples": spec.tail_samples,
            "block_rows": spec.block_rows,
        },
        "counts": {
            "chunks": base.n_chunk,
            "scored_positions": base.n_chunk * base.rows_per_chunk,
            "bytes_per_position": bytes_per_token(int(str(parts["top_k"])), spec.tail_samples),
        },
        "inputs": {
            "texts": [
                {
                    "name": text.name,
                    "source": text.source,
                    "sha256": text.sha256,
                    "n_text_tokens": base.n_chunk * base.n_ctx,
                    "n_chunks": base.n_chunk,
                }
            ]
        },
        "imported_from": {
            "tool": TOOL,
            "file": facts["file"],
            "size": base.file_size,
            "sha256": facts["sha256"],
            "n_ctx": base.n_ctx,
            "n_vocab": base.n_vocab,
            "n_chunk": base.n_chunk,
            "window_nats": base.window_nats(),
        },
    }


def corpus_spec_from_pack(pack: Pack, options: KldOptions, model_set: ModelSet) -> KldSpec:
    """The corpus run of `model_set`'s quants against the pack's baseline: the pack's texts (by
    digest), chunking and record; the cache, threads and margins from `options`."""
    settings = pack.manifest["settings"]
    texts = tuple(
        CorpusText(str(t["name"]), str(t["source"]), "", digest=str(t["sha256"]))
        for t in pack.manifest["inputs"]["texts"]
    )
    return KldSpec(
        model_set=model_set,
        texts=texts,
        ctx=int(settings["ctx"]),
        chunks=settings["chunks"],
        score_from=settings["score_from"],
        top_k=int(settings["top_k"]),
        tail_samples=int(settings["tail_samples"]),
        block_rows=int(settings["block_rows"]),
        cache_dir=None if options.no_cache else options.cache_dir,
        scoring_threads=options.scoring_threads,
        margins=options.margins,
    )


def llama_base_pack(
    path: Path, model: Path, cache_dir: Path, shape: tuple[int, int], on_chunk: ChunkDone | None
) -> Pack:
    """The pack of `path` in the cache (`<cache>/llama-base/`, by the file's identity, the
    tokenizer of `model` that reads its tokens, and the record's K and S), imported first when
    absent or damaged."""
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


def llama_base_run(
    path: Path,
    options: KldOptions,
    quants: Sequence[str],
    on_chunk: ChunkDone | None = None,
) -> tuple[KldSpec, PackFactory]:
    """`kld --llama-base FILE`: the spec and factory of a corpus run of the quants against the
    file (through its pack in the cache); `run_kld(spec, factory)` never opens a baseline.

    Raises:
        UsageError: no quant, `--text`, or `--no-cache`; the errors of `import_llama_base`.
    """
    if options.texts:
        raise UsageError("--llama-base holds its text (as tokens); drop --text")
    if options.no_cache or options.cache_dir is None:
        raise UsageError("--llama-base imports the file into the cache; drop --no-cache")
    if not quants and options.set_name is None:
        raise UsageError("--llama-base needs a quant to compare: --quant FILE (repeatable)")
    first = _first_quant(path, options, quants)
    pack = llama_base_pack(
        path, first, options.cache_dir, (options.top_k, options.tail_samples), on_chunk
    )
    model_set = pack_model_set(
        pack, quants, options.models_path, options.set_name, options.quant_settings
    )
    spec = corpus_spec_from_pack(pack, options, model_set)
    factory = PackFactory(model_set, pack.manifest["baseline"])
    probe = factory.probe(model_set.baseline)
    check_key(baseline_key_parts(spec, probe, factory, spec.top_k), pack.manifest)
    install_pack(pack, spec.cache_dir, model_set.quants)
    return spec, factory


def _first_quant(path: Path, options: KldOptions, quants: Sequence[str]) -> Path:
    """The GGUF whose tokenizer reads the file's tokens: the first quant (resolved)."""
    if quants:
        model_set = resolve_model_set(model_set_from_files(str(path), quants[:1]))
    else:
        from ggflip.config.models_toml import load_models_toml
        from ggflip.config.resolve import choose_set_name

        config = load_models_toml(options.models_path)
        name = choose_set_name(config, options.set_name, options.models_path)
        model_set = resolve_model_set(config.get_set(name))
    if not model_set.quants:
        raise UsageError("--llama-base needs a quant to compare: --quant FILE (repeatable)")
    return model_set.quants[0].path

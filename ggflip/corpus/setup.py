"""Resolve what a user asked for (models file, set, text, settings) into a corpus run's `KldSpec`.

Both front ends call `resolve_kld_spec`: the CLI with `ggflip kld`'s flags, the TUI with
`ggflip tui --text`, so a corpus run means the same thing whichever way it was started, and
`hf://` references are resolved in one place.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from ggflip.config.models_toml import default_cache_dir, load_models_toml
from ggflip.config.resolve import choose_set_name, resolve_model_set
from ggflip.config.settings_quants import with_settings_quants
from ggflip.corpus.spec import DEFAULT_CORPUS_TOP_K, DEFAULT_CTX, DEFAULT_TAIL_SAMPLES, KldSpec
from ggflip.corpus.texts import load_texts
from ggflip.runs.pipeline import requested_workers
from ggflip.scoring.equivalence import DEFAULT_MARGINS, Margins
from ggflip.tasks.calibration import calibration_overlap, read_calibration


@dataclass(frozen=True)
class KldOptions:
    """A corpus run as the user describes it: the flags of `ggflip kld` (`texts`: the files and
    folders of `--text`, each file a category)."""

    texts: tuple[Path, ...]
    models_path: Path = Path("models.toml")
    set_name: str | None = None  # None: the models file's only set
    quant_settings: tuple[str, ...] = ()  # the baseline's file under other settings, as quants
    ctx: int = DEFAULT_CTX
    chunks: int | None = None  # at most this many chunks of each text; None: every full chunk
    score_from: int | None = None  # a chunk's first scored position; None: ctx/2
    calibration: tuple[Path, ...] = ()  # imatrix calibration files to check the texts against
    top_k: int = DEFAULT_CORPUS_TOP_K
    tail_samples: int = DEFAULT_TAIL_SAMPLES
    cache_dir: Path | None = None  # None: the default cache directory
    no_cache: bool = False
    scoring_threads: int | None = None  # None: automatic; 0: no overlap
    margins: Margins = DEFAULT_MARGINS  # of each quant's equivalence to the baseline


def kld_options(flags: argparse.Namespace) -> KldOptions:
    """The corpus run that `ggflip kld`'s or `ggflip tui --text`'s flags describe: one translation
    for both front ends (a flag a subcommand lacks takes its default)."""
    ctx = getattr(flags, "ctx", None)
    top_k = getattr(flags, "top_k", None)
    tail_samples = getattr(flags, "tail_samples", None)
    return KldOptions(
        texts=tuple(flags.text or ()),
        models_path=getattr(flags, "models", None) or Path("models.toml"),
        set_name=getattr(flags, "set_name", None),
        quant_settings=tuple(getattr(flags, "quant_settings", None) or ()),
        ctx=DEFAULT_CTX if ctx is None else ctx,
        chunks=getattr(flags, "chunks", None),
        score_from=getattr(flags, "score_from", None),
        calibration=tuple(getattr(flags, "calibration", None) or ()),
        top_k=DEFAULT_CORPUS_TOP_K if top_k is None else top_k,
        tail_samples=DEFAULT_TAIL_SAMPLES if tail_samples is None else tail_samples,
        cache_dir=getattr(flags, "cache_dir", None),
        no_cache=bool(getattr(flags, "no_cache", False)),
        scoring_threads=requested_workers(
            bool(getattr(flags, "no_overlap", False)), getattr(flags, "scoring_threads", None)
        ),
    )


def resolve_kld_spec(options: KldOptions) -> KldSpec:
    """Load the models file and the texts, resolve `hf://` models, and build the KldSpec.

    Raises:
        UsageError, ConfigError, DataError, ModelFileError: for bad options, settings, text or
        an unresolvable model reference.
    """
    config = load_models_toml(options.models_path)
    name = choose_set_name(config, options.set_name, options.models_path)
    model_set = resolve_model_set(
        with_settings_quants(config.get_set(name), options.quant_settings)
    )
    cache_dir = None if options.no_cache else (options.cache_dir or default_cache_dir())
    texts = load_texts(options.texts)
    joined = "\n".join(text.text for text in texts)
    calibration = tuple(
        calibration_overlap(joined, path, read_calibration(path)) for path in options.calibration
    )
    return KldSpec(
        model_set=model_set,
        texts=texts,
        calibration=calibration,
        ctx=options.ctx,
        chunks=options.chunks,
        score_from=options.score_from,
        cache_dir=cache_dir,
        top_k=options.top_k,
        tail_samples=options.tail_samples,
        scoring_threads=options.scoring_threads,
        margins=options.margins,
    )

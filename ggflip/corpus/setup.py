"""Build a corpus run's `KldSpec` from what a user asked for (models file, set, text, settings)."""

from __future__ import annotations

import argparse

from ggflip.config.models_toml import default_cache_dir, load_models_toml
from ggflip.corpus.spec import KldSpec
from ggflip.corpus.texts import load_texts
from ggflip.errors import UsageError


def build_kld_spec(args: argparse.Namespace) -> KldSpec:
    """Resolve the kld flags into a KldSpec (`args.text`: the files and folders of `--text`).

    Raises:
        UsageError, ConfigError, DataError: for bad flags, settings or text.
    """
    config = load_models_toml(args.models)
    if args.set_name is None:
        if len(config.sets) != 1:
            raise UsageError(
                f"{args.models}: choose a set with --set "
                f"({', '.join(sorted(config.sets)) or 'none defined'})"
            )
        args.set_name = next(iter(config.sets))
    model_set = config.get_set(args.set_name)
    cache_dir = None if args.no_cache else (args.cache_dir or default_cache_dir())
    return KldSpec(
        model_set=model_set,
        texts=load_texts(args.text),
        ctx=args.ctx,
        chunks=args.chunks,
        cache_dir=cache_dir,
        top_k=args.top_k,
        tail_samples=args.tail_samples,
    )

"""Resolve what a user asked for (files or a models.toml set, a text or questions, the budget)
into an `AttributeSpec`, one translation for every front end."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ggflip.attribute.groups import parse_by
from ggflip.attribute.measure import ChoiceMeasure, CorpusMeasure, Measure
from ggflip.attribute.spec import AttributeSpec
from ggflip.attribute.store import ResultStore
from ggflip.backends.base import BackendFactory
from ggflip.choice.setup import RunOptions, resolve_run_spec
from ggflip.config.models_toml import ModelSet, default_cache_dir
from ggflip.config.resolve import choose_model_set
from ggflip.corpus.spec import DEFAULT_CTX, KldSpec
from ggflip.corpus.texts import load_texts
from ggflip.errors import UsageError

FactoryFor = Callable[[ModelSet], BackendFactory]


@dataclass(frozen=True)
class AttributeOptions:
    """An attribution as the user describes it (the flags of `ggflip attribute`). Without
    `texts` it is measured on questions, as `choice` (a multiple-choice run's options) says."""

    models_path: Path = Path("models.toml")
    set_name: str | None = None
    baseline: str | None = None
    quant: str | None = None  # a file; with a set, the label of one of its quants
    source: Path | None = None
    by: str = "kind"
    groups: tuple[str, ...] = ()
    texts: tuple[Path, ...] = ()
    ctx: int = DEFAULT_CTX
    chunks: int | None = None
    score_from: int | None = None
    choice: RunOptions | None = None
    budget: str | None = None
    verify: tuple[Path, ...] = ()
    compare: tuple[Path, ...] = ()
    write_recipe: Path | None = None
    work_dir: Path | None = None
    cache_dir: Path | None = None
    no_cache: bool = False
    scoring_threads: int | None = None


def _model_set(options: AttributeOptions) -> ModelSet:
    """The baseline and the one quant attributed.

    Raises:
        UsageError: no quant, or several and none named.
    """
    if options.baseline is not None:
        quants = [options.quant] if options.quant else []
        model_set = choose_model_set(
            options.models_path, options.set_name, options.baseline, quants
        )
        chosen = model_set.quants
    else:
        model_set = choose_model_set(options.models_path, options.set_name, None, ())
        chosen = tuple(q for q in model_set.quants if options.quant in (None, q.label, str(q.path)))
    if len(chosen) != 1:
        labels = ", ".join(q.label for q in model_set.quants) or "none"
        raise UsageError(
            f"attribution takes one quant; name it with --quant (the set has: {labels})"
            if chosen
            else f"--quant {options.quant}: not a quant of the set (it has: {labels})"
        )
    return dataclasses.replace(model_set, quants=chosen)


def _corpus(
    options: AttributeOptions,
    model_set: ModelSet,
    texts: tuple[Path, ...],
    cache: Path,
    factory: BackendFactory,
) -> CorpusMeasure:
    spec = KldSpec(
        model_set=model_set,
        texts=load_texts(texts),
        ctx=options.ctx,
        chunks=options.chunks,
        score_from=options.score_from,
        cache_dir=cache,
        scoring_threads=options.scoring_threads,
    )
    return CorpusMeasure(spec, factory)


def _choice(
    options: AttributeOptions, model_set: ModelSet, cache: Path, factory: BackendFactory
) -> ChoiceMeasure:
    run = dataclasses.replace(
        options.choice or RunOptions(),
        cache_dir=cache,
        no_cache=False,
        baseline=str(model_set.baseline.path),
        quants=(str(model_set.quants[0].path),),
        set_name=None,
        floor=False,
    )
    spec = dataclasses.replace(resolve_run_spec(run), model_set=model_set, run_store=None)
    return ChoiceMeasure(spec, factory)


def resolve_attribute_spec(
    options: AttributeOptions, factory_for: FactoryFor, scratch: Path
) -> AttributeSpec:
    """The spec of `options`; `scratch` holds the baseline's record when the cache is off.

    Raises:
        UsageError, ConfigError, DataError, ModelFileError: bad flags, files, text or questions.
    """
    by = parse_by(options.by)
    if options.verify and options.budget is None:
        raise UsageError("--verify measures a recipe: give --recipe-budget too")
    model_set = _model_set(options)
    factory = factory_for(model_set)
    cache = scratch if options.no_cache else (options.cache_dir or default_cache_dir())
    measure: Measure
    if options.texts:
        measure = _corpus(options, model_set, options.texts, cache, factory)
    else:
        measure = _choice(options, model_set, cache, factory)
    verify = _corpus(options, model_set, options.verify, cache, factory) if options.verify else None
    return AttributeSpec(
        baseline=model_set.baseline.path,
        quant=model_set.quants[0].path,
        measure=measure,
        source=options.source,
        by=by,
        patterns=options.groups,
        store=None if options.no_cache else ResultStore.in_cache(cache),
        work_dir=options.work_dir,
        budget=options.budget,
        verify=verify,
        compare=options.compare,
        write_recipe=options.write_recipe,
    )

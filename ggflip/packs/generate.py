"""Generation baselines as packs: export a run's cache entry, run from one.

The entry is the generation cache's `generate/<key>.npz` (`ggflip.generate.records`: per turn
the prompt's token ids, the greedy generation and the baseline's record of every generated
token); the manifest adds the task, every item and shot, the chat and system settings, and the
baseline's generated texts, so a run from the pack needs neither the baseline nor the data.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ggflip.backends.base import BackendFactory
from ggflip.config.models_toml import default_cache_dir
from ggflip.errors import PackError
from ggflip.generate.plan import key_parts
from ggflip.generate.records import GenerationCache
from ggflip.generate.setup import GenOptions
from ggflip.generate.spec import GenSpec, kv_layout
from ggflip.packs.archive import Pack, write_pack
from ggflip.packs.baseline import (
    PackFactory,
    check_key,
    install_pack,
    manifest_head,
    pack_factory,
    pack_model_set,
)
from ggflip.packs.choice import tuples
from ggflip.scoring.record import PositionRecord
from ggflip.store.keys import cache_key
from ggflip.store.rowdb import RowStore
from ggflip.tasks.generation import (
    GenItem,
    GenTask,
    check_fields,
    default_source,
    get_gen_task,
    items_digest,
    load_items,
    select,
)

MODE = "generate"


def export_generation(spec: GenSpec, factory: BackendFactory, out: Path) -> Pack:
    """Write the pack of `spec`'s baseline, whose entry must be in the cache.

    Raises:
        PackError: the cache holds no entry for this baseline.
    """
    spec = kv_layout(spec)  # as `run_generation` laid it out, so the key is the run's
    model_set = spec.model_set
    probe = factory.probe(model_set.baseline)
    parts = key_parts(spec, probe, factory)
    key = cache_key(parts)
    assert spec.cache_dir is not None
    cache = GenerationCache(spec.cache_dir)
    cached = cache.load(key)
    if cached is None:
        raise PackError(
            f"{spec.cache_dir}: no generation baseline entry for this run; run it first"
        )
    units, skips = cached
    top_k = min(spec.top_k, probe.n_vocab)
    manifest = {
        **manifest_head(MODE, model_set, probe, factory, model_set.baseline, parts),
        "task": spec.task.name,
        "settings": {
            "chat": spec.chat,
            "system": spec.system,
            "max_new_tokens": spec.max_new_tokens,
            "batch_size": spec.batch_size,
            "top_k": spec.top_k,
            "tail_samples": spec.tail_samples,
        },
        "counts": {
            "questions": len(spec.items),
            "turns": len(units) + len(skips),
            "skipped": len(skips),
            "scored_positions": sum(len(unit.tokens) for unit in units.values()),
            # the record and the generated token's log-prob (float64)
            "bytes_per_position": PositionRecord.bytes_per_row(top_k, spec.tail_samples) + 8,
        },
        "inputs": {
            "source": spec.source,
            "selection": spec.selection,
            "items_digest": items_digest(spec.items),
            "shots_digest": items_digest(spec.shots),
            "items": [dataclasses.asdict(item) for item in spec.items],
            "shots": [dataclasses.asdict(item) for item in spec.shots],
            "baseline_texts": {str(u): units[u].text for u in sorted(units)},
        },
    }
    return write_pack(out, manifest, {f"generate/{key}.npz": cache.folder / f"{key}.npz"})


def _items(stored: list[Mapping[str, Any]]) -> tuple[GenItem, ...]:
    return tuple(GenItem(**tuples(dict(item))) for item in stored)


def _check_items(
    pack: Pack, task: GenTask, options: GenOptions, items: tuple[GenItem, ...]
) -> None:
    """Refuse prompts given with `--data`/`--limit` that are not the pack's.

    Raises:
        PackError: naming the pack; DataError: the given data cannot be read.
    """
    source = options.data or default_source(task)
    given, _ = select(
        load_items(task, source, check_fields(options.fields)),
        options.limit,
        options.seed,
        options.first,
    )
    if items_digest(tuple(given)) != items_digest(items):
        raise PackError(f"{pack.path}: the prompts differ from the pack's; drop --data/--limit")


def gen_run_from_pack(
    pack: Pack,
    options: GenOptions,
    task_given: bool,
    allow_numerics_mismatch: bool = False,
) -> tuple[GenSpec, PackFactory]:
    """The spec and factory of a generation run against the pack's baseline, its entry
    installed: the pack's items and shots unless data is given (then they must be the pack's),
    its chat, system, token budget, batching, K and S unless given (then the key check refuses a
    difference).

    Raises:
        UsageError, PackError, ConfigError, ModelFileError, DataError: before anything runs.
    """
    manifest = pack.manifest
    inputs, settings = manifest["inputs"], manifest["settings"]
    if task_given and options.task != manifest["task"]:
        raise PackError(f"--task {options.task}: the pack is of {manifest['task']}")
    task = get_gen_task(manifest["task"])
    if task is None:
        raise PackError(f"{pack.path}: generation task {manifest['task']!r} is unknown here")
    model_set = pack_model_set(
        pack,
        options.quants,
        options.models_path,
        options.set_name,
        options.quant_settings,
        options.baseline,
    )
    model_set, factory = pack_factory(model_set, manifest["baseline"], allow_numerics_mismatch)
    items, shots = _items(inputs["items"]), _items(inputs["shots"])
    if task_given or options.data or options.limit or options.seed is not None or options.first:
        _check_items(pack, task, options, items)
    cache_dir = None if options.no_cache else (options.cache_dir or default_cache_dir())
    spec = GenSpec(
        model_set=model_set,
        task=task,
        items=items,
        source=inputs["source"],
        selection=inputs["selection"],
        shots=shots,
        chat=options.chat or settings["chat"],
        system=options.system if options.system is not None else settings["system"],
        max_new_tokens=options.max_new_tokens or settings["max_new_tokens"],
        batch_size=options.batch_size or settings["batch_size"],
        top_k=options.top_k or settings["top_k"],
        tail_samples=settings["tail_samples"],
        cache_dir=cache_dir,
        run_store=RowStore.in_cache(cache_dir) if cache_dir else None,
        resume=options.resume,
        scoring_threads=options.scoring_threads,
        margins=options.margins,
    )
    spec = kv_layout(spec)  # as `run_generation` lays it out, so the key is the run's
    check_key(key_parts(spec, factory.probe(model_set.baseline), factory), manifest)
    install_pack(pack, spec.cache_dir, model_set.quants)
    return spec, factory

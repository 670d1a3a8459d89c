"""Build a generation run's `GenSpec` from what a user asked for (models file, set, task, flags)."""

from __future__ import annotations

import argparse

from ggflip.config.models_toml import default_cache_dir, load_models_toml
from ggflip.errors import UsageError
from ggflip.generate.spec import DEFAULT_GEN_TOP_K, GenSpec
from ggflip.store.rundb import RunStore
from ggflip.tasks.generation import (
    GenItem,
    GenTask,
    check_fields,
    default_source,
    load_items,
    pick_shots,
    select,
    shot_source,
)


def build_gen_spec(args: argparse.Namespace, task: GenTask) -> GenSpec:
    """Resolve the run flags of a generation task into a GenSpec.

    Raises:
        UsageError, ConfigError, DataError: for bad flags, settings or prompts.
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
    fields = check_fields(getattr(args, "field", ()))
    source = args.data or default_source(task)
    items = select(load_items(task, source, fields), args.limit, args.seed)
    n_shots = task.shots if getattr(args, "shots", None) is None else args.shots
    if n_shots < 0:
        raise UsageError(f"--shots must be 0 or more, got {n_shots}")
    shots: tuple[GenItem, ...] = ()
    if n_shots:
        where = getattr(args, "shots_from", None) or shot_source(task, source)
        shots = pick_shots(load_items(task, where, fields), n_shots, where)
    max_new = getattr(args, "max_new_tokens", None)
    if max_new is not None and max_new <= 0:
        raise UsageError(f"--max-new-tokens must be positive, got {max_new}")
    if args.batch_size <= 0:
        raise UsageError(f"--batch-size must be positive, got {args.batch_size}")
    cache_dir = None if args.no_cache else (args.cache_dir or default_cache_dir())
    return GenSpec(
        model_set=model_set,
        task=task,
        items=tuple(items),
        source=source,
        shots=shots,
        chat=bool(getattr(args, "chat", False)) or task.chat,
        system=getattr(args, "system", None),
        max_new_tokens=max_new,
        batch_size=args.batch_size,
        top_k=args.top_k or DEFAULT_GEN_TOP_K,
        cache_dir=cache_dir,
        run_store=RunStore.in_cache(cache_dir) if cache_dir else None,
        resume=not getattr(args, "no_resume", False),
    )

"""Resolve what a user asked for (models file, set, task, prompts, flags) into a `GenSpec`.

Both front ends call `resolve_gen_spec`: the CLI with `ggflip run --task gsm8k|prompts|mt_bench`'s
flags, the TUI with `ggflip tui --task ...`, so a generation run means the same thing whichever
way it was started, and `hf://` model references are resolved in one place.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ggflip.config.models_toml import default_cache_dir
from ggflip.config.resolve import choose_model_set
from ggflip.errors import DataError, UsageError
from ggflip.generate.spec import DEFAULT_GEN_TOP_K, GenSpec
from ggflip.scoring.equivalence import DEFAULT_MARGINS, Margins
from ggflip.store.rowdb import RowStore
from ggflip.tasks.generation import (
    GenItem,
    GenTask,
    check_fields,
    default_source,
    get_gen_task,
    load_items,
    pick_shots,
    select,
    shot_source,
)
from ggflip.tasks.sources import hub_unreachable


@dataclass(frozen=True)
class GenOptions:
    """A generation run as the user describes it; `None` means "the default" where allowed."""

    task: str
    models_path: Path = Path("models.toml")
    set_name: str | None = None  # None: the models file's only set
    data: str | None = None  # None: the task's default prompts
    fields: tuple[str, ...] = field(default=())  # NAME=COLUMN mappings (--field)
    shots: int | None = None  # None: the task's
    shots_from: str | None = None  # None: the task's shot split
    limit: int | None = None
    seed: int | None = None  # of the --limit sample (None: 0)
    first: bool = False  # --limit takes the first N prompts instead of a sample
    baseline: str | None = None  # without a models.toml set: the baseline GGUF (path or hf://)
    quants: tuple[str, ...] = field(default=())  # with `baseline`: quant files, folders, globs
    quant_settings: tuple[str, ...] = field(default=())  # the baseline's file, other settings
    chat: bool = False  # also on when the task asks through the chat template by default
    system: str | None = None
    max_new_tokens: int | None = None  # None: the task's
    batch_size: int = 4
    top_k: int | None = None  # None: DEFAULT_GEN_TOP_K
    cache_dir: Path | None = None  # None: the default cache directory
    no_cache: bool = False
    resume: bool = True
    scoring_threads: int | None = None  # None: the cores llama.cpp leaves free; 0: no overlap
    margins: Margins = DEFAULT_MARGINS  # of each quant's equivalence to the baseline


def _check(options: GenOptions) -> None:
    for flag, value in (
        ("--max-new-tokens", options.max_new_tokens),
        ("--batch-size", options.batch_size),
        ("--top-k", options.top_k),
    ):
        if value is not None and value <= 0:
            raise UsageError(f"{flag} must be positive, got {value}")
    if options.scoring_threads is not None and options.scoring_threads < 0:
        raise UsageError(f"--scoring-threads must be 0 or more, got {options.scoring_threads}")
    if options.shots is not None and options.shots < 0:
        raise UsageError(f"--shots must be 0 or more, got {options.shots}")


def _hub_shots(task: GenTask, source: str, n_shots: int) -> str:
    """The task's shot split; with local prompts and the Hub out of reach, a DataError naming the
    fix at once (before `datasets` retries for half a minute and any model loads).

    Raises:
        DataError: no shot source, or a Hub one that cannot be reached while --data is local.
    """
    where = shot_source(task, source)
    if not source.startswith("hf:") and (why := hub_unreachable()):
        raise DataError(
            f"{task.name} takes its {n_shots} shots from {where}, and the Hugging Face Hub is out "
            f"of reach ({why}): pass --shots-from FILE (rows like --data's) or --shots 0"
        )
    return where


def resolve_gen_spec(options: GenOptions) -> GenSpec:
    """Load the models file, the prompts and the shots, and build the GenSpec both front ends run.

    Raises:
        UsageError, ConfigError, DataError, ModelFileError: for bad options, settings, prompts or
        an unresolvable model reference.
    """
    task = get_gen_task(options.task)
    if task is None:
        raise UsageError(f"'{options.task}' is not a generation task")
    _check(options)
    model_set = choose_model_set(
        options.models_path,
        options.set_name,
        options.baseline,
        options.quants,
        options.quant_settings,
    )
    fields = check_fields(options.fields)
    source = options.data or default_source(task)
    items, selection = select(
        load_items(task, source, fields), options.limit, options.seed, options.first
    )
    n_shots = task.shots if options.shots is None else options.shots
    shots: tuple[GenItem, ...] = ()
    if n_shots:
        where = options.shots_from or _hub_shots(task, source, n_shots)
        shots = pick_shots(load_items(task, where, fields), n_shots, where)
    cache_dir = None if options.no_cache else (options.cache_dir or default_cache_dir())
    return GenSpec(
        model_set=model_set,
        task=task,
        items=tuple(items),
        source=source,
        selection=selection,
        shots=shots,
        chat=options.chat or task.chat,
        system=options.system,
        max_new_tokens=options.max_new_tokens,
        batch_size=options.batch_size,
        top_k=options.top_k or DEFAULT_GEN_TOP_K,
        cache_dir=cache_dir,
        run_store=RowStore.in_cache(cache_dir) if cache_dir else None,
        resume=options.resume,
        scoring_threads=options.scoring_threads,
        margins=options.margins,
    )

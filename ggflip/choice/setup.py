"""Resolve what a user asked for (models file, set, task, questions) into a `RunSpec`.

Both front ends call `resolve_run_spec`: the CLI with its flags, the TUI with its setup view,
so a run means the same thing whichever way it was started.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ggflip.choice.row_store import RowStore
from ggflip.choice.spec import RunSpec
from ggflip.config.models_toml import ModelSet, default_cache_dir
from ggflip.config.resolve import choose_model_set as resolve_models
from ggflip.errors import UsageError, check_counts
from ggflip.scoring.equivalence import DEFAULT_MARGINS, Margins
from ggflip.tasks.calibration import CalibrationOverlap, calibration_overlap, read_calibration
from ggflip.tasks.load import load_task_questions, resolve_task
from ggflip.tasks.prompts import PromptSet
from ggflip.tasks.questions import QuestionSet

log = logging.getLogger("ggflip")


@dataclass(frozen=True)
class RunOptions:
    """A run as the user describes it; `None` means "the default" for every optional field."""

    models_path: Path = Path("models.toml")
    set_name: str | None = None
    baseline: str | None = None  # instead of a set: a GGUF path or hf:// reference ...
    quants: tuple[str, ...] = field(default=())  # ... and its quants: files, folders, globs, hf://
    quant_settings: tuple[str, ...] = field(default=())  # the baseline's file, other settings
    task: str = "mmlu"
    task_file: Path | None = None  # a TOML task file, overriding `task`
    fields: tuple[str, ...] = field(default=())  # NAME=COLUMN mappings (--field)
    mode: str | None = None  # "letter" or "cloze", overriding the task's
    shots: int | None = None  # few-shot examples per question (None: the task's)
    shots_from: str | None = None  # where shots come from (None: the task's split)
    data: str | None = None
    limit: int | None = None
    seed: int | None = None  # of the --limit sample (None: 0)
    first: bool = False  # --limit takes the first N questions instead of a sample
    subjects: tuple[str, ...] = field(default=())
    skip_bad_rows: bool = False
    cache_dir: Path | None = None
    no_cache: bool = False
    top_k: int | None = None
    tail_samples: int | None = None  # baseline tail draws per scored position (None: default)
    batch_size: int = 4
    resume: bool = True
    prefix_reuse: bool = True  # share few-shot prefixes and cloze contexts across prompts
    floor: bool = False  # score the baseline a second time as the noise floor
    scoring_threads: int | None = None  # None: the cores llama.cpp leaves free; 0: no overlap
    margins: Margins = DEFAULT_MARGINS  # of each quant's equivalence to the baseline
    calibration: tuple[Path, ...] = ()  # imatrix calibration files to check the questions against


def choose_model_set(options: RunOptions) -> ModelSet:
    """The run's models: `config.resolve.choose_model_set` of its options."""
    return resolve_models(
        options.models_path,
        options.set_name,
        options.baseline,
        options.quants,
        options.quant_settings,
    )


def question_overlaps(
    questions: QuestionSet, files: Sequence[Path]
) -> tuple[CalibrationOverlap, ...]:
    """Each calibration file's share of the questions' 8-word windows (question and choices).

    Raises:
        DataError: a file cannot be read.
    """
    text = "\n".join(" ".join((q.text, *q.choices)) for q in questions.questions)
    return tuple(calibration_overlap(text, path, read_calibration(path)) for path in files)


def check_options(options: RunOptions) -> None:
    """Refuse non-positive sizes before anything is loaded.

    Raises:
        UsageError: naming the flag and the value.
    """
    check_counts({"--limit": options.limit})
    if options.first and options.seed is not None:
        raise UsageError("--first takes the first questions; --seed picks a sample: give one")
    check_counts(
        {"--batch-size": options.batch_size, "--top-k": options.top_k},
        {
            "--tail-samples": options.tail_samples,
            "--scoring-threads": options.scoring_threads,
            "--shots": options.shots,
        },
    )


def resolve_run_spec(options: RunOptions) -> RunSpec:
    """Load the models file and the questions, and build the RunSpec both front ends run.

    Raises:
        UsageError, ConfigError, DataError: for bad options, settings or questions.
    """
    check_options(options)
    model_set = choose_model_set(options)
    task, questions, prompts = resolve_questions(options)
    return run_spec(options, model_set, task, questions, prompts)


def resolve_questions(options: RunOptions) -> tuple[str, QuestionSet, PromptSet]:
    """The task's name, its selected questions and their rendered prompts.

    Raises:
        UsageError, DataError: for a bad task, fields or questions.
    """
    task = resolve_task(options.task, options.task_file, options.fields, options.mode)
    questions, prompts = load_task_questions(
        task,
        data=options.data,
        skip_bad_rows=options.skip_bad_rows,
        limit=options.limit,
        seed=options.seed,
        first=options.first,
        subjects=options.subjects,
        shots=options.shots,
        shots_from=options.shots_from,
    )
    return task.name, questions, prompts


def run_spec(
    options: RunOptions,
    model_set: ModelSet,
    task: str,
    questions: QuestionSet,
    prompts: PromptSet,
) -> RunSpec:
    """The RunSpec of these models, questions and prompts under the options' settings."""
    cache_dir = None if options.no_cache else (options.cache_dir or default_cache_dir())
    return RunSpec(
        model_set=model_set,
        questions=questions,
        task=task,
        cache_dir=cache_dir,
        top_k=options.top_k,
        batch_size=options.batch_size,
        run_store=RowStore.in_cache(cache_dir) if cache_dir else None,
        resume=options.resume,
        prompts=prompts,
        share_prefixes=options.prefix_reuse,
        tail_samples=options.tail_samples,
        floor=options.floor,
        scoring_threads=options.scoring_threads,
        margins=options.margins,
        calibration=question_overlaps(questions, options.calibration),
    )

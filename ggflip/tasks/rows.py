"""A task's field map: how a row of any layout becomes a `Question`, plus named row preprocessors.

A `FieldMap` names the row's columns (dotted paths reach into nested columns, e.g. ARC's
`choices.text`). `choices` is one list column, or several columns holding one choice each.
The answer is a letter, a 0-based index (`answer_base` shifts 1-based ones, as in
Winogrande's "1"/"2"), or, with `answer_labels`, one of the labels in that column (ARC's
`answerKey` among `choices.label`). A preprocessor rewrites a raw row first, the way
lm-evaluation-harness' `process_docs` does (HellaSwag's query and endings).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ggflip.errors import DataError
from ggflip.tasks.questions import LETTERS, BadRow, Question, gold_index, text_field


@dataclass(frozen=True)
class FieldMap:
    """Which columns hold the question, the choices, the answer, and optionally subject and id."""

    question: str = "question"
    choices: tuple[str, ...] = ("choices",)
    answer: str = "answer"
    answer_labels: str | None = None
    answer_base: int = 0
    subject: str | None = None
    id: str | None = None


def _get(row: Mapping[str, Any], dotted: str) -> Any:
    value: Any = row
    for part in dotted.split("."):
        if not isinstance(value, Mapping) or part not in value:
            raise BadRow(f"field '{dotted}' is missing")
        value = value[part]
    return value


def _optional(row: Mapping[str, Any], dotted: str | None) -> Any:
    """An optional column (subject, id): None when the map or the row lacks it."""
    try:
        return _get(row, dotted) if dotted else None
    except BadRow:
        return None


def _choices(row: Mapping[str, Any], fields: FieldMap) -> list[str]:
    if len(fields.choices) == 1:
        raw = _get(row, fields.choices[0])
        if not isinstance(raw, (list, tuple)):
            raise BadRow(f"field '{fields.choices[0]}' must be a list of choices")
    else:
        raw = [_get(row, name) for name in fields.choices]
    choices = [c if isinstance(c, str) else "" for c in raw]
    if any(not c.strip() for c in choices):
        raise BadRow("a choice is empty or not text")
    if len(choices) < 2:
        raise BadRow(f"needs at least two choices, found {len(choices)}")
    if len(choices) > len(LETTERS):
        raise BadRow(f"at most {len(LETTERS)} choices, found {len(choices)}")
    return choices


def _gold(row: Mapping[str, Any], fields: FieldMap, n_choices: int) -> int:
    raw = _get(row, fields.answer)
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        raise BadRow(f"field '{fields.answer}' is missing or empty")
    if fields.answer_labels:
        labels = [str(label) for label in _get(row, fields.answer_labels)]
        if str(raw) not in labels:
            raise BadRow(f"answer {raw!r} is not one of the labels {labels}")
        return labels.index(str(raw))
    if fields.answer_base and not (isinstance(raw, str) and raw.strip().isalpha()):
        try:
            index = int(raw) - fields.answer_base
        except (TypeError, ValueError):
            raise BadRow(f"answer {raw!r} is not a number") from None
        if not 0 <= index < n_choices:
            raise BadRow(
                f"answer {raw!r} is outside the {n_choices} choices (numbered from "
                f"{fields.answer_base})"
            )
        return index
    return gold_index(raw, n_choices)


def _hellaswag(row: Mapping[str, Any]) -> dict[str, Any]:
    """lm-evaluation-harness' HellaSwag `process_docs`: query from activity label and contexts,
    cleaned endings."""
    ctx = f"{_get(row, 'ctx_a')} {str(_get(row, 'ctx_b')).capitalize()}"
    endings = _get(row, "endings")
    if not isinstance(endings, (list, tuple)):
        raise BadRow("field 'endings' must be a list")
    return {
        **row,
        "query": hellaswag_clean(f"{_get(row, 'activity_label')}: {ctx}"),
        "endings": [hellaswag_clean(str(e)) for e in endings],
    }


def hellaswag_clean(text: str) -> str:
    """HellaSwag's WikiHow markup cleanup, as in lm-evaluation-harness (`[title]` becomes a full
    stop)."""
    text = text.strip().replace(" [title]", ". ")
    text = re.sub(r"\[.*?\]", "", text)
    return text.replace("  ", " ")


def _winogrande(row: Mapping[str, Any]) -> dict[str, Any]:
    """Check the blank Winogrande's partial evaluation splits on: one `_` with text after it."""
    sentence = _get(row, "sentence")
    if not isinstance(sentence, str) or "_" not in sentence:
        raise BadRow("field 'sentence' has no '_' blank")
    if not sentence[sentence.index("_") + 1 :].strip():
        raise BadRow("field 'sentence' has nothing after its '_' blank to score")
    return dict(row)


PREPROCESSORS: dict[str, Callable[[Mapping[str, Any]], dict[str, Any]]] = {
    "hellaswag": _hellaswag,
    "winogrande": _winogrande,
}


def row_converter(
    fields: FieldMap, preprocess: str | None = None
) -> Callable[[Any, str], Question]:
    """A function turning one raw row into a Question through `fields` (after `preprocess`).

    The function raises DataError naming the field that is wrong.
    """
    prepare = PREPROCESSORS[preprocess] if preprocess else dict

    def convert(row: Any, default_id: str) -> Question:
        try:
            if not isinstance(row, Mapping):
                raise BadRow(f"expected an object, got {type(row).__name__}")
            row = prepare(row)
            text = text_field({"q": _get(row, fields.question)}, "q") if fields.question else ""
            choices = _choices(row, fields)
            gold = _gold(row, fields, len(choices))
            subject = str(_optional(row, fields.subject) or "").strip()
            qid = str(_optional(row, fields.id) or default_id)
            return Question(id=qid, subject=subject, text=text, choices=tuple(choices), gold=gold)
        except BadRow as exc:
            message = str(exc).replace("field 'q'", f"field '{fields.question}'")
            raise DataError(message) from None

    return convert

"""Generation tasks as data: where the prompts come from, how they are asked, when to stop.

A `GenTask` declares its source, how a row becomes a `GenItem` (`gsm8k`: question and a gold
answer ending in `#### N`; `prompts`: a prompt with an optional id and answer; `mt_bench`: a
list of turns), its prompt template and shots, its stop strings, `max_new_tokens`, the answer
rules (`ggflip.generate.extract`) and whether it is asked through the chat template by default.

`gsm8k` follows lm-evaluation-harness' `gsm8k` task: `Question: {question}\\nAnswer:` prompts,
5 shots from the train split rendered as `Question: ...\\nAnswer: <full answer>`, joined by a
blank line, stop strings `Question:`, `</s>`, `<|im_end|>`, and up to 256 new tokens. One
difference, on purpose: every question gets the same 5 shots (one `random.Random(1234)` sample),
where lm-eval draws new ones per question; one shared prefix is decoded once for every question.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ggflip.errors import DataError, UsageError, did_you_mean
from ggflip.tasks.default_prompts import DEFAULT_PROMPTS, EMBEDDED_TEMPLATE
from ggflip.tasks.sources import SourceSpec, iter_rows, parse_source

SHOT_SEED = 1234
EMBEDDED_SOURCE = "ggflip:default-prompts"


@dataclass(frozen=True)
class GenItem:
    """One question to generate for: its turns (one for a single prompt) and gold answer if any."""

    id: str
    turns: tuple[str, ...]
    answer: str | None = None


@dataclass(frozen=True)
class GenTask:
    """A generation benchmark, declared as data.

    Attributes:
        kind: how rows become items: "gsm8k", "prompts" or "mt_bench".
        hf_source: the default `hf:` source ("" when the task has none).
        template: a turn's prompt, formatted with {prompt} (ignored under the chat template).
        shots, shot_split: default shots and the split of the source they come from.
        stop: stop strings; max_new_tokens: the most tokens generated per turn.
        answer_rule: the rule named as the answer; other_rules: reported under `by_rule`.
        chat: asked through the model's chat template by default.
    """

    name: str
    description: str
    kind: str
    hf_source: str = ""
    template: str = "{prompt}"
    shots: int = 0
    shot_split: str | None = None
    stop: tuple[str, ...] = ()
    max_new_tokens: int = 256
    answer_rule: str | None = None
    other_rules: tuple[str, ...] = ()
    chat: bool = False
    version: int = 1

    def prompt_version(self, n_shots: int, chat: bool) -> str:
        """The versioned name of this task's prompt (part of every cache key)."""
        name = f"{self.name}-gen-v{self.version}"
        return name + (f"+{n_shots}shot" if n_shots else "") + ("+chat" if chat else "")


GEN_TASKS: dict[str, GenTask] = {
    "gsm8k": GenTask(
        name="gsm8k",
        description="GSM8K test set, 5-shot worked answers, exact match (strict and flexible)",
        kind="gsm8k",
        hf_source="hf:openai/gsm8k:main:test",
        template="Question: {prompt}\nAnswer:",
        shots=5,
        shot_split="train",
        stop=("Question:", "</s>", "<|im_end|>"),
        max_new_tokens=256,
        answer_rule="strict",
        other_rules=("flexible",),
    ),
    "prompts": GenTask(
        name="prompts",
        description="your prompts (--data .txt or .jsonl; default: ggflip's embedded set)",
        kind="prompts",
        stop=("Question:",),
        max_new_tokens=96,
        answer_rule="match",
    ),
    "mt_bench": GenTask(
        name="mt_bench",
        description="MT-Bench two-turn questions (--data question.jsonl), chat template",
        kind="mt_bench",
        max_new_tokens=256,
        chat=True,
    ),
}


def get_gen_task(name: str) -> GenTask | None:
    """The generation task called `name`, None when it names another mode's task."""
    return GEN_TASKS.get(name)


def is_generation_task(task: str, task_file: Path | None = None) -> bool:
    """Whether `--task` runs generation mode (gsm8k, prompts, mt_bench) rather than multiple
    choice: the one place a task picks its mode; a task file is always multiple choice."""
    return task_file is None and get_gen_task(task) is not None


def _where_row(where: str, message: str) -> DataError:
    return DataError(f"{where}: {message}")


def _text(value: object, where: str, field: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _where_row(where, f"'{field}' must be a non-empty string")
    return value


def _txt_items(path: Path) -> list[GenItem]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read prompt file: {exc}") from None
    blocks = [b.strip() for b in text.replace("\r\n", "\n").split("\n\n")]
    return [GenItem(f"{path.stem}-{i}", (b,)) for i, b in enumerate(blocks, 1) if b]


def _row_item(
    kind: str, where: str, default_id: str, row: object, fields: dict[str, str]
) -> GenItem:
    if isinstance(row, Exception):
        raise _where_row(where, str(row))
    if not isinstance(row, dict):
        raise _where_row(where, "expected an object")
    item_id = str(row.get(fields.get("id", "id"), row.get("question_id", default_id)))
    if kind == "mt_bench":
        turns = row.get(fields.get("turns", "turns"))
        if not isinstance(turns, list) or not turns:
            raise _where_row(where, "no 'turns' (a list of prompts)")
        return GenItem(item_id, tuple(_text(t, where, "turns") for t in turns))
    if kind == "gsm8k":
        question = _text(row.get(fields.get("question", "question")), where, "question")
        answer = _text(row.get(fields.get("answer", "answer")), where, "answer")
        return GenItem(item_id, (question,), answer)
    prompt = _text(row.get(fields.get("prompt", "prompt")), where, "prompt")
    gold = row.get(fields.get("answer", "answer"))
    return GenItem(item_id, (prompt,), None if gold is None else str(gold))


def load_items(task: GenTask, source: str, fields: dict[str, str] | None = None) -> list[GenItem]:
    """The items of `source` (a file, `hf:...`, or the embedded prompt set).

    Raises:
        DataError: unreadable source, a row without its fields (file:line), no items at all.
    """
    fields = fields or {}
    if source == EMBEDDED_SOURCE:
        items = [
            GenItem(i, (EMBEDDED_TEMPLATE.format(prompt=q),), a) for i, q, a in DEFAULT_PROMPTS
        ]
    elif not source.startswith("hf:") and Path(source).suffix.lower() == ".txt":
        items = _txt_items(Path(source).expanduser())
    else:
        spec: SourceSpec = parse_source(source)
        items = [_row_item(task.kind, w, d, r, fields) for w, d, r in iter_rows(spec)]
    if not items:
        raise DataError(f"{source}: no prompts in it")
    seen: set[str] = set()
    for item in items:
        if item.id in seen:
            raise DataError(f"{source}: id {item.id!r} appears twice")
        seen.add(item.id)
    return items


def default_source(task: GenTask) -> str:
    """Where a task's items come from without --data.

    Raises:
        DataError: a task that needs --data.
    """
    if task.kind == "prompts":
        return EMBEDDED_SOURCE
    if not task.hf_source:
        raise DataError(f"task '{task.name}' has no default prompts; give them with --data FILE")
    return task.hf_source


def shot_source(task: GenTask, source: str) -> str:
    """The default source of shots: the task's shot split of its `hf:` source."""
    if not task.shot_split or not task.hf_source:
        raise DataError(f"task '{task.name}' has no shot source; give one with --shots-from")
    spec = parse_source(task.hf_source)
    return spec.with_split(task.shot_split).label


def pick_shots(pool: Sequence[GenItem], n_shots: int, where: str) -> tuple[GenItem, ...]:
    """n shots, one `random.Random(1234)` sample of the pool, the same for every question.

    Raises:
        DataError: fewer items than shots.
    """
    if n_shots == 0:
        return ()
    if len(pool) < n_shots:
        raise DataError(f"{where}: {len(pool)} examples, fewer than the {n_shots} shots asked")
    return tuple(random.Random(SHOT_SEED).sample(list(pool), n_shots))


def select(
    items: list[GenItem], limit: int | None, seed: int | None, first: bool = False
) -> tuple[list[GenItem], str]:
    """At most `limit` items and, in words, which: a sample fixed by `seed` (0 when not given),
    kept in file order, or with `first` the first ones (as multiple choice's `--limit`).

    Raises:
        UsageError: a limit that is not positive, or `first` with a seed.
    """
    n = len(items)
    if limit is None:
        return items, f"all {n} prompts"
    if limit <= 0:
        raise UsageError(f"--limit must be positive, got {limit}")
    if first and seed is not None:
        raise UsageError("--first takes the first prompts; --seed picks a sample: give one")
    if limit >= n:
        return items, f"all {n} prompts"
    if first:
        return items[:limit], f"the first {limit} of {n} prompts (--first)"
    seed = 0 if seed is None else seed
    chosen = sorted(random.Random(seed).sample(range(n), limit))
    return (
        [items[i] for i in chosen],
        f"{limit} of {n} prompts, a sample (seed {seed}; --first for the first {limit})",
    )


def render_plain(task: GenTask, shots: Sequence[GenItem], prompt: str) -> tuple[str, str]:
    """(whole prompt, its shared few-shot prefix) without a chat template, as lm-eval renders."""
    prefix = "".join(
        task.template.format(prompt=s.turns[0]) + " " + (s.answer or "") + "\n\n" for s in shots
    )
    return prefix + task.template.format(prompt=prompt), prefix


def check_fields(assignments: Sequence[str]) -> dict[str, str]:
    """`--field NAME=COLUMN` flags of a generation task as a mapping.

    Raises:
        UsageError: a flag without `=`, or an unknown name (with "did you mean").
    """
    known = ("prompt", "question", "answer", "id", "turns")
    fields: dict[str, str] = {}
    for item in assignments:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep:
            raise UsageError(f"--field {item}: expected NAME=COLUMN, e.g. --field prompt=text")
        if key not in known:
            hint = did_you_mean(key, known)
            raise UsageError(f"--field {key}=...: unknown field{hint} (fields: {', '.join(known)})")
        fields[key] = value.strip()
    return fields


def items_digest(items: Sequence[GenItem]) -> str:
    """A digest of the items (turns and answers), for cache keys."""
    import hashlib

    blob = json.dumps([[i.id, list(i.turns), i.answer] for i in items], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]

"""Prompt text: a task's template, its few-shot prefix, and how option letters map to tokens.

Letter mode (`mmlu-letter-v1` for MMLU, lm-evaluation-harness' `mmlu` prompt):

    The following are multiple choice questions (with answers) about {subject}.

    [shot question\nA. ..\nB. ..\nAnswer: B\n\n] x n_shots
    {question}
    A. {choice A}
    B. {choice B}
    ...
    Answer:

The model's answer is read at the single position after `Answer:`. A model may put its
probability on " A" (letter with a leading space, what follows "Answer:" in running text)
or on "A" (bare letter). ggflip scores each option as the probability of *either* form:
log p(option) = logsumexp(log p(" A"), log p("A")), taking each form only when the
tokenizer encodes it as one token, and each token once (SentencePiece tokenizers may map
both spellings to the same piece). The answer is the argmax over these option scores.

Cloze mode: the context is the header, the shots (each its template plus " " plus its gold
choice) and the question's template; each choice is scored as the continuation " {choice}".
With `partial` (Winogrande), each choice fills the sentence's `_` blank in the context and the
rest of the sentence is the continuation, as in lm-evaluation-harness.
Changing any of this changes the prompt version, which is part of every cache key; the cache
key also holds a digest of every rendered prompt, so shots are always part of it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ggflip.errors import BackendError
from ggflip.tasks.questions import LETTERS, Question

if TYPE_CHECKING:
    from ggflip.tasks.registry import Task

PROMPT_VERSION = "mmlu-letter-v1"


@dataclass(frozen=True)
class RenderedQuestion:
    """One question as text: one context per choice (letter mode: one), each with its continuation.

    `choice_lengths` are the characters of each choice's scored text, the divisor of the
    per-character (acc_norm) log-likelihood. `prefix_chars` is the length of the header and
    shots that begin every context, a prefix questions of one subject share.
    """

    contexts: tuple[str, ...]
    continuations: tuple[str, ...]
    choice_lengths: tuple[int, ...] = ()
    prefix_chars: int = 0


@dataclass(frozen=True)
class PromptSet:
    """Every question of a run rendered for one task: the engine's input besides the models."""

    version: str
    mode: str
    answer_rule: str | None
    n_shots: int
    items: tuple[RenderedQuestion, ...]

    def digest(self) -> str:
        """A digest of every rendered prompt, shots included, in order."""
        blob = json.dumps(
            [
                self.version,
                self.mode,
                self.answer_rule,
                [[i.contexts, i.continuations] for i in self.items],
            ]
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _subject(question: Question) -> str:
    return question.subject.replace("_", " ") if question.subject else "general knowledge"


def _body(task: Task, question: Question) -> str:
    options = "\n".join(f"{LETTERS[i]}. {choice}" for i, choice in enumerate(question.choices))
    return task.template.format(question=question.text, options=options, subject=_subject(question))


def _blank(question: Question) -> tuple[str, str]:
    """Winogrande's sentence split at its blank: (before, rest after it, stripped)."""
    index = question.text.index("_")
    return question.text[:index], question.text[index + 1 :].strip()


def _shot_text(task: Task, shot: Question) -> str:
    if task.mode == "letter":
        return _body(task, shot) + task.target_delimiter + LETTERS[shot.gold]
    if task.partial:
        before, rest = _blank(shot)
        return before + shot.choices[shot.gold] + task.target_delimiter + rest
    return _body(task, shot) + task.target_delimiter + shot.choices[shot.gold]


def render_question(
    task: Task, question: Question, shots: Sequence[Question] = ()
) -> RenderedQuestion:
    """The question's prompt text under `task`, after the header and its shots."""
    prefix = task.header.format(subject=_subject(question))
    prefix += "".join(_shot_text(task, shot) + task.shot_delimiter for shot in shots)
    if task.mode == "letter":
        return RenderedQuestion((prefix + _body(task, question),), ("",), (), len(prefix))
    if task.partial:
        before, rest = _blank(question)
        contexts = tuple(prefix + before + choice for choice in question.choices)
        return RenderedQuestion(
            contexts,
            (task.target_delimiter + rest,) * len(contexts),
            (len(rest),) * len(contexts),
            len(prefix),
        )
    context = prefix + _body(task, question)
    return RenderedQuestion(
        (context,) * len(question.choices),
        tuple(task.target_delimiter + choice for choice in question.choices),
        tuple(len(choice) for choice in question.choices),
        len(prefix),
    )


def render_prompt(question: Question) -> str:
    """The MMLU zero-shot letter prompt for one question, ending right before the answer letter."""
    from ggflip.tasks.registry import get_task

    return render_question(get_task("mmlu"), question).contexts[0]


def render_prompts(
    task: Task,
    questions: Sequence[Question],
    shots_for: Callable[[Question], Sequence[Question]],
    n_shots: int,
) -> PromptSet:
    """Render every question of a run, each with its shots."""
    items = tuple(render_question(task, q, shots_for(q)) for q in questions)
    rule = task.answer_rule if task.mode == "cloze" else None
    return PromptSet(task.prompt_version(n_shots), task.mode, rule, n_shots, items)


@dataclass(frozen=True)
class LetterTokens:
    """For each option letter, the token ids that spell it as an answer (" A" and/or "A")."""

    variants: tuple[tuple[int, ...], ...]

    def for_options(self, n_options: int) -> tuple[tuple[int, ...], ...]:
        """The variants of the first `n_options` letters."""
        return self.variants[:n_options]


def letter_tokens(tokenize: Callable[[str], Sequence[int]], n_letters: int) -> LetterTokens:
    """Find the single-token spellings of the first `n_letters` letters.

    Args:
        tokenize: text to token ids, without BOS.
        n_letters: how many letters (A, B, ...) are needed.

    Raises:
        BackendError: a letter has no single-token spelling, so it cannot be scored at one position.
    """
    variants = []
    for letter in LETTERS[:n_letters]:
        ids: list[int] = []
        for text in (" " + letter, letter):
            tokens = list(tokenize(text))
            if len(tokens) == 1 and tokens[0] not in ids:
                ids.append(tokens[0])
        if not ids:
            raise BackendError(
                f"the tokenizer has no single token for the answer letter '{letter}'"
            )
        variants.append(tuple(ids))
    all_ids = [token for ids in variants for token in ids]
    if len(set(all_ids)) != len(all_ids):
        raise BackendError(
            "two answer letters share a token; letter questions cannot be scored with this "
            "tokenizer"
        )
    return LetterTokens(variants=tuple(variants))

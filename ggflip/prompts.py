"""The letter-question prompt, versioned, and how option letters map to tokens.

Template `mmlu-letter-v1` is the classic MMLU prompt (Hendrycks et al., as in
lm-evaluation-harness's `mmlu` task), zero-shot:

    The following are multiple choice questions (with answers) about {subject}.

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
Changing any of this changes `PROMPT_VERSION`, which is part of every cache key.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

from ggflip.errors import BackendError
from ggflip.questions import LETTERS, Question

PROMPT_VERSION = "mmlu-letter-v1"


def render_prompt(question: Question) -> str:
    """The prompt text for one question, ending right before the answer letter."""
    subject = question.subject.replace("_", " ") if question.subject else "general knowledge"
    lines = [f"The following are multiple choice questions (with answers) about {subject}.", "", question.text]
    lines += [f"{LETTERS[i]}. {choice}" for i, choice in enumerate(question.choices)]
    lines.append("Answer:")
    return "\n".join(lines)


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
            raise BackendError(f"the tokenizer has no single token for the answer letter '{letter}'")
        variants.append(tuple(ids))
    all_ids = [token for ids in variants for token in ids]
    if len(set(all_ids)) != len(all_ids):
        raise BackendError("two answer letters share a token; letter questions cannot be scored with this tokenizer")
    return LetterTokens(variants=tuple(variants))

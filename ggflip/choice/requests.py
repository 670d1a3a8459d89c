"""A run's rendered prompts as backend requests for one loaded model, and their logits as answers.

Letter mode: one request per question, read at its last position. Cloze mode: one request per
choice, read at the continuation's tokens. A few-shot prefix (letter) or a question's context
shared by its choices (cloze) is marked for the backend to decode once, when it is long enough.
"""

from __future__ import annotations

from collections.abc import Sequence

from ggflip.backends.base import Backend, ScoreRequest
from ggflip.choice.answers import ChoiceScore, score_cloze, score_letters
from ggflip.errors import BackendError
from ggflip.scoring.topk import Normalized
from ggflip.tasks.prompts import PromptSet, RenderedQuestion, letter_tokens
from ggflip.tasks.questions import Question, QuestionSet

# A shared prefix shorter than this is not worth a decode of its own: such requests are
# packed whole into the same llama_decode calls instead.
MIN_SHARED_PREFIX = 32


class Prompts:
    """Tokenized requests of one run for one loaded backend, and how their logits become answers.

    As in lm-evaluation-harness, a cloze choice's context and context + continuation are
    tokenized separately and the continuation's tokens are the tail of the latter beyond the
    context's length, so a token merging across the boundary is scored as part of the
    continuation. `too_long` maps a question with a request longer than n_ctx to the reason it
    is skipped.
    """

    def __init__(
        self,
        backend: Backend,
        questions: QuestionSet,
        prompt_set: PromptSet,
        share_prefixes: bool = True,
    ) -> None:
        self.questions = questions.questions
        self.prompt_set = prompt_set
        if len(prompt_set.items) != len(self.questions):
            raise ValueError("one rendered prompt per question is needed")
        self.requests: list[tuple[ScoreRequest, ...]] = []
        self.targets: list[tuple[tuple[int, ...], ...]] = []
        self.too_long: dict[int, str] = {}
        self.letters = None
        if prompt_set.mode == "letter":
            max_options = max(len(q.choices) for q in self.questions)
            self.letters = letter_tokens(
                lambda text: backend.tokenize(text, add_bos=False, special=False), max_options
            )
        for index, (question, item) in enumerate(zip(self.questions, prompt_set.items)):
            if prompt_set.mode == "letter":
                requests = [
                    _letter_request(backend, context, item.prefix_chars, share_prefixes)
                    for context, _ in zip(item.contexts, item.continuations)
                ]
                targets: list[tuple[int, ...]] = []
            else:
                requests, targets = _cloze_requests(backend, question, item)
            if share_prefixes and len(requests) > 1:
                # the choices of a cloze question share their context: decoded once, branched per
                # choice
                shared = _common_prefix([r.tokens for r in requests])
                if shared >= MIN_SHARED_PREFIX:
                    requests = [ScoreRequest(r.tokens, r.positions, shared) for r in requests]
            longest = max(len(r.tokens) for r in requests)
            if longest > backend.n_ctx:
                self.too_long[index] = (
                    f"prompt of {longest} tokens does not fit n_ctx={backend.n_ctx} (raise n_ctx "
                    "in models.toml)"
                )
            self.requests.append(tuple(requests))
            self.targets.append(tuple(targets))

    def n_rows(self, index: int) -> int:
        """How many positions of question `index` are scored (whether or not it fits n_ctx)."""
        return sum(len(r.positions) for r in self.requests[index])

    def rows_per_question(self) -> list[int]:
        """Scored positions per question as the baseline stores them: none for a question that does
        not fit."""
        return [0 if i in self.too_long else self.n_rows(i) for i in range(len(self.requests))]

    def score(self, index: int, blocks: Sequence[Normalized]) -> ChoiceScore:
        """The answer of question `index` from its normalized rows (one block per request)."""
        n_options = len(self.questions[index].choices)
        if self.letters is not None:
            return score_letters(blocks[0], self.letters.for_options(n_options))
        item = self.prompt_set.items[index]
        rule = self.prompt_set.answer_rule or "norm"
        return score_cloze(blocks, self.targets[index], item.choice_lengths, rule)


def _letter_request(
    backend: Backend, context: str, prefix_chars: int, share_prefixes: bool
) -> ScoreRequest:
    """A letter-mode request, read at its last position; its few-shot prefix marked as shared
    when it is long enough."""
    context_tokens = backend.tokenize(context, add_bos=True, special=False)
    shared = 0
    if share_prefixes and prefix_chars:
        shared = _common_prefix(
            [
                backend.tokenize(context[:prefix_chars], add_bos=True, special=False),
                context_tokens,
            ]
        )
        shared = shared if shared >= MIN_SHARED_PREFIX else 0
    return ScoreRequest(tuple(context_tokens), (len(context_tokens) - 1,), shared)


def _cloze_requests(
    backend: Backend, question: Question, item: RenderedQuestion
) -> tuple[list[ScoreRequest], list[tuple[int, ...]]]:
    """A cloze question's requests, one per choice read at its continuation's tokens, and those
    tokens.

    Raises:
        BackendError: a choice with no tokens beyond its context.
    """
    requests, targets = [], []
    for choice, (context, continuation) in enumerate(zip(item.contexts, item.continuations)):
        context_tokens = backend.tokenize(context, add_bos=True, special=False)
        whole = backend.tokenize(context + continuation, add_bos=True, special=False)
        start = len(context_tokens)
        if len(whole) <= start:
            raise BackendError(
                f"question {question.id}: choice {choice} has no tokens to score after its context"
            )
        requests.append(ScoreRequest(tuple(whole), tuple(range(start - 1, len(whole) - 1))))
        targets.append(tuple(whole[start:]))
    return requests, targets


def _common_prefix(sequences: Sequence[Sequence[int]]) -> int:
    """Length of the longest prefix every sequence shares."""
    n = min(len(s) for s in sequences)
    for i in range(n):
        token = sequences[0][i]
        if any(s[i] != token for s in sequences[1:]):
            return i
    return n

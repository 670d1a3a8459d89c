"""The multiple-choice run view's questions to the engine's fold; no Textual here.

`LiveRun` is `choice.fold.ChoiceFold` (per-model progress, rows and running metrics, folded from
the engine's events) plus the flip list's filters and orders and the subjects' flip counts.
"""

from __future__ import annotations

from typing import Any

from ggflip.choice.answers import FLIP_GAINED, FLIP_LOST, QuestionRow
from ggflip.choice.events import FLOOR
from ggflip.choice.fold import ChoiceFold, ChoiceModel
from ggflip.choice.verdicts import verdict_of
from ggflip.runs.events import QUANT
from ggflip.tasks.questions import Question

DIRECTIONS: tuple[str | None, ...] = (None, FLIP_LOST, FLIP_GAINED)
SORTS: tuple[str, ...] = ("scored", "kl", "margin")


ModelState = ChoiceModel
"""One model's progress and rows (the engine's one `ModelProgress`, with multiple-choice rows)."""


class LiveRun(ChoiceFold):
    """The multiple-choice fold and the run view's questions to it: flips, subjects, partial
    quants, verdicts."""

    _verdicts: dict[str, tuple[int, str]]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._verdicts = {}

    def verdict(self, label: str) -> str | None:
        """Quant `label`'s verdict against the noise floor: the engine's once it finished, else
        the same test over the questions it has scored so far; None before the floor is done
        (or without one) or before any question."""
        model = self.models[label]
        if model.summary is not None:
            return model.summary.verdict
        if self.floor is None or not model.rows:
            return None
        cached = self._verdicts.get(label)
        if cached is None or cached[0] != len(model.rows):
            cached = (len(model.rows), verdict_of(model.rows, self.floor.rows).verdict)
            self._verdicts[label] = cached
        return cached[1]

    def question(self, index: int) -> Question:
        """The question at `index` of the run."""
        return self.spec.questions.questions[index]

    def flips(
        self, label: str, direction: str | None, subject: str | None, sort: str
    ) -> list[QuestionRow]:
        """The flipped rows of one quant, filtered by direction and subject, in the chosen order."""
        rows = [
            r
            for r in self.models[label].rows
            if r.flip
            and (direction is None or r.flip == direction)
            and (subject is None or r.subject == subject)
        ]
        if sort == "kl":
            rows.sort(key=lambda r: -r.kl)
        elif sort == "margin":
            rows.sort(key=lambda r: r.top_margin)
        return rows

    def flip_subjects(self, label: str) -> list[tuple[str, int]]:
        """Every subject with its number of flips of quant `label` so far (the flip list's
        counts), most flips first."""
        counts: dict[str, int] = {q.subject: 0 for q in self.spec.questions.questions}
        for row in self.models[label].rows:
            if row.flip:
                counts[row.subject] = counts.get(row.subject, 0) + 1
        return sorted(counts.items(), key=lambda item: (-item[1], item[0]))

    def partial(self) -> list[ModelState]:
        """The quants (and the floor) scored part-way (neither waiting nor done): their rows
        cover fewer questions than the baseline's row."""
        return [
            model
            for model in self.models.values()
            if model.role in (QUANT, FLOOR)
            and model.summary is None
            and 0 < len(model.rows) < model.total
        ]

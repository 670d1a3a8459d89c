"""The generation run view's questions to the engine's fold (`generate.fold.GenFold`); no
Textual.

The turn list filters (flips, one direction, diverged texts, every turn) and sorts (generation
order, largest teacher-forced KL, earliest divergence); a turn's token view shades each of the
baseline's tokens by its KL, with the corpus view's shades.
"""

from __future__ import annotations

import math

from rich.text import Text

from ggflip.choice.setup import RunOptions
from ggflip.generate.compare import TurnRow
from ggflip.generate.fold import GenFold
from ggflip.generate.report import GenQuant, flip_of
from ggflip.generate.setup import GenOptions
from ggflip.runs.fold import ModelProgress
from ggflip.tasks.generation import is_generation_task
from ggflip.tui.corpus_live import kl_style

FLIP_LOST, FLIP_GAINED = "correct_to_incorrect", "incorrect_to_correct"
GRADED_FILTERS = ("flips", FLIP_LOST, FLIP_GAINED, "diverged", "all")
UNGRADED_FILTERS = ("diverged", "all")
FILTER_NAMES = {
    "flips": "flipped answers",
    FLIP_LOST: "correct→incorrect",
    FLIP_GAINED: "incorrect→correct",
    "diverged": "texts that differ",
    "all": "every turn",
}
FILTER_COUNTS = {  # "Turns of Q: 3 flipped of 12 compared"
    "flips": "flipped",
    FLIP_LOST: "correct→incorrect",
    FLIP_GAINED: "incorrect→correct",
    "diverged": "differing",
    "all": "shown",
}
GEN_SORTS = ("order", "kl", "divergence")
SORT_NAMES = {
    "order": "in generation order",
    "kl": "largest KL first",
    "divergence": "earliest divergence first",
}
DIVERGENCE_STYLE = "bold reverse"
END = "∎"  # where a text ends (or an end-of-text token, which has no text)


SHARED_OPTIONS = (
    "task",
    "models_path",
    "set_name",
    "data",
    "fields",
    "shots",
    "shots_from",
    "limit",
    "seed",
    "first",
    "baseline",
    "quants",
    "quant_settings",
    "batch_size",
    "cache_dir",
    "no_cache",
    "scoring_threads",
)
"""The choices a generation run and the setup view's `RunOptions` share, by name."""


def gen_options(
    options: RunOptions,
    *,
    chat: bool = False,
    system: str | None = None,
    max_new_tokens: int | None = None,
) -> GenOptions | None:
    """The setup's choices as a generation run when the task is a generation task, else None."""
    if not is_generation_task(options.task, options.task_file):
        return None
    shared = {name: getattr(options, name) for name in SHARED_OPTIONS}
    return GenOptions(**shared, chat=chat, system=system, max_new_tokens=max_new_tokens)


def setup_options(options: GenOptions) -> RunOptions:
    """A generation run's choices as the setup view shows them (the way back of `gen_options`)."""
    return RunOptions(**{name: getattr(options, name) for name in SHARED_OPTIONS})


GenModel = ModelProgress[TurnRow, GenQuant]
"""One model's progress and compared turns (the engine's one `ModelProgress`)."""


class LiveGen(GenFold):
    """The generation fold and the run view's questions to it: the turn list's filters and
    orders."""

    @property
    def filters(self) -> tuple[str, ...]:
        """The turn list's filters: answer flips only mean something with gold answers."""
        return GRADED_FILTERS if self.rule else UNGRADED_FILTERS

    def prompt(self, row: TurnRow) -> str:
        """The user's text of a compared turn."""
        item, turn = self.units[row.index]
        return self.spec.items[item].turns[turn]

    def turns(self, label: str, shown: str, sort: str) -> list[TurnRow]:
        """One quant's compared turns that pass the filter `shown`, in the chosen order."""
        rows = [r for r in self.models[label].rows if self._passes(r, shown)]
        if sort == "kl":
            rows.sort(key=lambda r: -r.kl_mean)
        elif sort == "divergence":
            rows.sort(key=lambda r: math.inf if r.first_divergence is None else r.first_divergence)
        return rows

    def _passes(self, row: TurnRow, shown: str) -> bool:
        if shown == "all":
            return True
        if shown == "diverged":
            return row.first_divergence is not None
        flip = flip_of(row, self.rule)
        return flip is not None and (shown == "flips" or flip == shown)


def token_texts(row: TurnRow) -> tuple[Text, Text]:
    """Both generations of a turn, token by token: the baseline's shaded by teacher-forced KL,
    the token where the two first differ marked in both (∎ where one text ended), the quant's
    text after it dim."""
    if not row.base_pieces and not row.quant_pieces:  # a row without its pieces: plain texts
        return Text(row.base_text), Text(row.quant_text)
    divergence = row.first_divergence
    base, quant = Text(), Text()
    for j, piece in enumerate(row.base_pieces):
        style = kl_style(row.token_kl[j]) if j < len(row.token_kl) else ""
        if j == divergence:
            base.append(piece or END, style=f"{style} {DIVERGENCE_STYLE}".strip())
        else:
            base.append(piece, style=style)
    for j, piece in enumerate(row.quant_pieces):
        if j == divergence:
            quant.append(piece or END, style=DIVERGENCE_STYLE)
        else:
            quant.append(piece, style="dim" if divergence is not None and j > divergence else "")
    for text, pieces in ((base, row.base_pieces), (quant, row.quant_pieces)):
        if divergence is not None and divergence >= len(pieces):
            text.append(END, style=DIVERGENCE_STYLE)
    return base, quant

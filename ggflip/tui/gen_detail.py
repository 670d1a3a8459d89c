"""One compared turn of a generation run: the prompt, then both generations side by side.

The baseline's text is shaded token by token by the quant's teacher-forced KL (the corpus
view's shades); the token where the two generations first differ is marked in both, and the
quant's text after it is dim, since from there on it continues its own conversation.
"""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from ggflip.generate.compare import TurnRow
from ggflip.generate.report import flip_of
from ggflip.tui.corpus_live import kl_legend
from ggflip.tui.gen_cells import answer_cell
from ggflip.tui.gen_live import DIVERGENCE_STYLE, FLIP_LOST, token_texts
from ggflip.tui.run_widgets import footer
from ggflip.tui.views import direction_text


class GenDetailScreen(ModalScreen[None]):
    """One turn: prompt, answers, metrics, and the two generations next to each other."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,enter,q", "dismiss", "Close")]
    DEFAULT_CSS = """
    GenDetailScreen { align: center middle; }
    GenDetailScreen > Vertical {
        width: 100%; height: 100%; border: thick $accent; background: $surface; padding: 0 1;
    }
    GenDetailScreen #gen-head { height: auto; }
    GenDetailScreen #gen-prompt { height: auto; max-height: 6; color: $text-muted; }
    GenDetailScreen #gen-sides { height: 1fr; }
    GenDetailScreen .gen-side { width: 1fr; padding: 0 1; border-top: solid $accent; }
    GenDetailScreen .gen-side-title { text-style: bold; }
    GenDetailScreen #gen-legend { height: auto; }
    """

    def __init__(
        self, row: TurnRow, prompt: str, rule: str | None, baseline_label: str, quant_label: str
    ) -> None:
        super().__init__()
        self.row, self.prompt, self.rule = row, prompt, rule
        self.baseline_label, self.quant_label = baseline_label, quant_label

    def compose(self) -> ComposeResult:
        base_text, quant_text = token_texts(self.row)
        with Vertical():
            yield Static(self._head(), id="gen-head")
            with VerticalScroll(id="gen-prompt"):
                yield Static(Text(self.prompt))
            with Horizontal(id="gen-sides"):
                with VerticalScroll(classes="gen-side", id="gen-base"):
                    title = self._side_title(self.baseline_label, True)
                    yield Static(title, classes="gen-side-title")
                    yield Static(base_text, id="gen-base-text")
                with VerticalScroll(classes="gen-side", id="gen-quant"):
                    title = self._side_title(self.quant_label, False)
                    yield Static(title, classes="gen-side-title")
                    yield Static(quant_text, id="gen-quant-text")
            yield Static(self._legend(), id="gen-legend")
        yield footer()

    def _head(self) -> Text:
        r = self.row
        flip = flip_of(r, self.rule)
        head = Text.assemble(
            (r.id, "bold"),
            f"  ·  turn {r.turn + 1}  ·  {self.quant_label} vs {self.baseline_label}",
        )
        if self.rule:
            base, quant = r.answers.get(self.rule, ("", ""))
            head.append(f"  ·  gold {r.gold or '–'}  ·  {self.rule}: {answer_cell(base)} → ")
            head.append(f"{answer_cell(quant)}  ")
            head.append(
                direction_text(flip),
                "bold red" if flip == FLIP_LOST else "bold green" if flip else "bold",
            )
        where = (
            "identical texts"
            if r.first_divergence is None
            else (f"first divergence at token {r.first_divergence}")
        )
        head.append(
            f"\n{where}  ·  KL mean {r.kl_mean:.4f}, max {r.kl_max:.3f}  ·  top-1 agreement "
            f"{100 * r.top1_agreement:.1f}%  ·  tokens {r.n_tokens} (base) / {r.quant_n_tokens}",
            style="dim",
        )
        return head

    def _side_title(self, label: str, baseline: bool) -> Text:
        truncated = self.row.base_truncated if baseline else self.row.quant_truncated
        role = "baseline, shaded by the quant's KL" if baseline else "quant, its own generation"
        return Text(f"{label} ({role}){' · truncated' if truncated else ''}")

    @staticmethod
    def _legend() -> Text:
        legend = kl_legend(note="")
        legend.append("  ")
        legend.append(" first divergence ", style=DIVERGENCE_STYLE)
        legend.append("  dim: the quant's text after it", style="dim")
        return legend

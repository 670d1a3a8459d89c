"""Modal views of the run: question detail, flip rate by top margin, subject picker, error."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import ClassVar

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Grid, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from ggflip.choice.answers import FLIP_LOST, QuestionRow
from ggflip.tasks.questions import LETTERS, Question
from ggflip.tui.columns import plural
from ggflip.tui.run_widgets import footer

_EIGHTHS = " ▏▎▍▌▋▊▉"
LIVE_SECONDS = 0.5  # how often a view over a running quant looks for new rows
Chart = tuple[str, list[dict[str, float | int]]]  # a quant's label and its margin buckets


def bar(fraction: float, width: int) -> str:
    """A horizontal bar of `width` cells filled to `fraction` (clipped to [0, 1]), in eighths of a
    cell."""
    eighths = round(max(0.0, min(1.0, fraction)) * width * 8)
    full, part = divmod(eighths, 8)
    text = "█" * full + (_EIGHTHS[part] if part else "")
    return text.ljust(width)


def direction_text(flip: str | None) -> str:
    """A flip direction as the arrow form shown everywhere in the TUI."""
    if flip is None:
        return "no flip"
    return "correct→incorrect" if flip == FLIP_LOST else "incorrect→correct"


class ErrorScreen(ModalScreen[None]):
    """A one-line error (from a GgflipError) the user acknowledges; the app stays usable."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,enter", "dismiss", "Close")]
    DEFAULT_CSS = """
    ErrorScreen { align: center middle; }
    ErrorScreen > Vertical {
        width: 100%; max-width: 90; height: auto; border: thick $error; background: $surface;
        padding: 1 2;
    }
    ErrorScreen #error-title { text-style: bold; color: $error; }
    """

    def __init__(self, message: str, title: str = "Error") -> None:
        super().__init__()
        self.message, self.title_text = message, title

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(self.title_text, id="error-title")
            yield Static(Text(self.message), id="error-message")
            yield Static(Text("Enter or Esc to close", style="dim"))


class ResumeScreen(ModalScreen[bool]):
    """Offers to resume an unfinished run: keep the stored questions, or score everything again."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter,y", "answer(True)", "Resume"),
        Binding("n", "answer(False)", "Start over"),
    ]
    DEFAULT_CSS = """
    ResumeScreen { align: center middle; }
    ResumeScreen > Vertical {
        width: 100%; max-width: 80; height: auto; border: thick $accent; background: $surface;
        padding: 1 2;
    }
    """

    def __init__(self, stored: dict[str, int], total: int) -> None:
        super().__init__()
        self.stored, self.total = stored, total

    def compose(self) -> ComposeResult:
        lines = [
            f"  {label}: {n}/{self.total} questions stored" for label, n in self.stored.items() if n
        ]
        with Vertical():
            yield Static(Text("Resume the unfinished run?", style="bold"))
            yield Static(Text("\n".join(lines)))
            yield Static(
                Text("Enter/y: resume, scoring only what is missing · n: start over", style="dim")
            )

    def action_answer(self, resume: bool) -> None:
        self.dismiss(resume)


class QuestionDetailScreen(ModalScreen[None]):
    """One question: its text, options, baseline vs quant probabilities per option, gold, KL,
    margin."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,enter,q", "dismiss", "Close")]
    DEFAULT_CSS = """
    QuestionDetailScreen { align: center middle; }
    QuestionDetailScreen > VerticalScroll {
        width: 100%; height: auto; max-height: 100%;
        border: thick $accent; background: $surface; padding: 0 1;
    }
    """

    def __init__(
        self, question: Question, row: QuestionRow, baseline_label: str, quant_label: str
    ) -> None:
        super().__init__()
        self.question, self.row = question, row
        self.baseline_label, self.quant_label = baseline_label, quant_label

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static(self._content(self.app.size.width), id="detail")
        yield footer()

    def on_resize(self, event: events.Resize) -> None:
        self.query_one("#detail", Static).update(self._content(event.size.width))

    def _content(self, width: int) -> RenderableType:
        """The detail at `width` columns: the bars shrink on a narrow terminal so the option text
        keeps at least half the width."""
        bar_width = 18 if width >= 110 else 8
        q, r = self.question, self.row
        head = Text.assemble(
            (f"{q.id}", "bold"),
            f"  ·  {q.subject}  ·  {self.quant_label} vs {self.baseline_label}  ·  ",
            (
                direction_text(r.flip),
                "bold red" if r.flip == FLIP_LOST else "bold green" if r.flip else "bold",
            ),
        )
        options = Table(box=None, pad_edge=False, expand=True)
        options.add_column("", width=3)
        options.add_column("option", ratio=1, overflow="fold")
        options.add_column(self.baseline_label, width=bar_width + 12, no_wrap=True)
        options.add_column(self.quant_label, width=bar_width + 12, no_wrap=True)
        for i, choice in enumerate(q.choices):
            mark = Text(
                f"{LETTERS[i]}{'✓' if i == q.gold else ' '}",
                style="bold green" if i == q.gold else "",
            )
            options.add_row(
                mark,
                choice,
                self._cell(r.base_probs[i], i == r.base_choice, "blue", bar_width),
                self._cell(r.quant_probs[i], i == r.quant_choice, "magenta", bar_width),
            )
        facts = Text(
            f"gold {LETTERS[r.gold]}  ·  baseline {LETTERS[r.base_choice]}  ·  quant "
            f"{LETTERS[r.quant_choice]}  ·  KL {r.kl:.4f} (options only {r.kl_options:.4f})  ·  "
            f"baseline top margin {r.top_margin:.3f}  ·  same top token: "
            f"{'yes' if r.same_top else 'no'}",
            style="dim",
        )
        return Group(
            head,
            Text(""),
            Text(q.text),
            Text(""),
            options,
            Text(""),
            facts,
            Text("◀ = the model's answer", style="dim"),
        )

    @staticmethod
    def _cell(prob: float, chosen: bool, color: str, bar_width: int) -> Text:
        return Text.assemble(
            (bar(prob, bar_width), color), f" {100 * prob:5.1f}%", (" ◀" if chosen else "", "bold")
        )


class MarginScreen(ModalScreen[None]):
    """Flip rate per baseline top-margin bucket, one bar chart per quant, on a shared scale; it
    follows the run live (`charts` is asked again while the run goes on)."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,m,q", "dismiss", "Close")]
    DEFAULT_CSS = """
    MarginScreen { align: center middle; }
    MarginScreen > Vertical { width: 100%; height: 100%; background: $surface; }
    MarginScreen #margin-title { padding: 0 1; text-style: bold; }
    MarginScreen Grid { grid-size: 2; grid-gutter: 0 1; height: auto; }
    MarginScreen.narrow Grid { grid-size: 1; }
    MarginScreen Grid > Static { height: auto; }
    """

    def __init__(self, charts: Callable[[], Sequence[Chart]]) -> None:
        super().__init__()
        self.charts_now = charts
        self.charts = list(charts())

    def compose(self) -> ComposeResult:
        peak = max(
            (float(b["flip_rate"]) for _, buckets in self.charts for b in buckets), default=0.0
        )
        scale = peak if peak > 0 else 1.0
        with Vertical():
            yield Static(
                "Flip rate per baseline top-margin bucket, the margin being the baseline's best "
                "option probability minus its second best (one scale for all quants: the longest "
                f"bar is {100 * peak:.1f}%)",
                id="margin-title",
            )
            with VerticalScroll():
                if not self.charts:
                    yield Static("No quant has scored a question yet.")
                with Grid():
                    for label, buckets in self.charts:
                        yield Static(self._chart(label, buckets, scale))
        yield footer()

    def _follow_run(self) -> None:
        charts = list(self.charts_now())
        if charts != self.charts:
            self.charts = charts
            self.refresh(recompose=True)

    def on_mount(self) -> None:
        self._fit(self.app.size.width)
        self.set_interval(LIVE_SECONDS, self._follow_run)

    def on_resize(self, event: events.Resize) -> None:
        self._fit(event.size.width)

    def _fit(self, width: int) -> None:
        # A chart is ~50 columns wide: two side by side need a wide terminal, else one per row.
        self.set_class(width < 110, "narrow")

    @staticmethod
    def _chart(label: str, buckets: list[dict[str, float | int]], scale: float) -> Panel:
        table = Table(box=None, show_header=True, pad_edge=False)
        table.add_column("margin", no_wrap=True)
        table.add_column("flip rate", no_wrap=True)
        table.add_column("", justify="right", no_wrap=True)
        table.add_column("flips/n", justify="right", no_wrap=True)
        n_total = sum(int(b["n"]) for b in buckets)
        for b in buckets:
            rate = float(b["flip_rate"])
            empty = not int(b["n"])  # no question had this margin: there is no rate to show
            table.add_row(
                f"{b['lo']:.2f}–{b['hi']:.2f}",
                Text(bar(0.0 if empty else rate / scale, 24), style="red"),
                "    –" if empty else f"{100 * rate:5.1f}%",
                "–" if empty else f"{b['flips']}/{b['n']}",
            )
        return Panel(table, title=f"{label} ({n_total} questions)", title_align="left")


class SubjectPicker(ModalScreen["str | None"]):
    """Pick the subject the flip list shows; "all subjects" clears the filter."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "dismiss_unchanged", "Close")]
    DEFAULT_CSS = """
    SubjectPicker { align: center middle; }
    SubjectPicker > OptionList { width: 70; height: 80%; border: thick $accent; }
    """
    ALL = "\x00all"

    def __init__(
        self, subjects: Sequence[tuple[str, int]], current: str | None, quant: str = ""
    ) -> None:
        super().__init__()
        self.subjects, self.current, self.quant = subjects, current, quant

    def compose(self) -> ComposeResult:
        options = [Option("all subjects", id=self.ALL)]
        options += [
            Option(Text(f"{subject}  ({plural(n, 'flip')})"), id=subject)
            for subject, n in self.subjects
        ]
        picker = OptionList(*options)
        picker.border_title = (
            f"Subject filter ({self.quant}'s flips)" if self.quant else ("Subject filter")
        )
        yield picker

    def on_mount(self) -> None:
        picker = self.query_one(OptionList)
        picker.highlighted = 0 if self.current is None else picker.get_option_index(self.current)
        picker.focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.dismiss(None if event.option.id == self.ALL else event.option.id)

    def action_dismiss_unchanged(self) -> None:
        self.dismiss(self.current)

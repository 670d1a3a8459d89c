"""Corpus mode's adapter to the one run screen (`ggflip kld`): llama-perplexity statistics per
model, per text, and one chunk's text shaded by the selected quant's per-token KL.

n/p move chunk by chunk, [ and ] quant by quant. Corpus mode keeps no run store: a re-run scores
every quant again (the baseline comes back from its cache), and the status line says so.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.widgets import Static

from ggflip.backends.base import BackendFactory
from ggflip.choice.setup import RunOptions
from ggflip.corpus.engine import run_kld
from ggflip.corpus.events import CorpusReady, KldReport
from ggflip.corpus.setup import KldOptions, resolve_kld_spec
from ggflip.corpus.spec import KldSpec
from ggflip.reports.corpus import render_kld_markdown
from ggflip.runs.fold import ModelProgress
from ggflip.tasks.calibration import calibration_warning
from ggflip.tui import help
from ggflip.tui.columns import fit_columns
from ggflip.tui.corpus_live import KLD_PRIORITY, LiveKld, kl_legend
from ggflip.tui.corpus_tables import CategoryTable, kld_cells, kld_columns
from ggflip.tui.run_screen import RunScreen
from ggflip.tui.run_widgets import run_bindings

CORPUS_TASK = "kld"
"""The setup view's task name for corpus mode (its Data: the text files or folders)."""

__all__ = ["CORPUS_TASK", "KldOptions", "KldScreen"]


class KldScreen(RunScreen[KldOptions, KldSpec, LiveKld]):
    """A corpus run going live."""

    BINDINGS: ClassVar[list[BindingType]] = run_bindings(
        before=(
            Binding("n", "chunk(1)", "Next chunk"),
            Binding("p", "chunk(-1)", "Prev"),
            Binding("right_square_bracket", "quant(1)", "Next quant"),
            Binding("left_square_bracket", "quant(-1)", "Prev"),
        )
    )
    DEFAULT_CSS = """
    KldScreen #summary { max-height: 10; }
    KldScreen #category-title { height: 1; padding: 0 1; background: $boost; display: none; }
    KldScreen #categories { height: auto; max-height: 8; display: none; }
    KldScreen.categories #category-title { display: block; }
    KldScreen.categories #categories { display: block; }
    KldScreen #token-title { height: 1; padding: 0 1; background: $boost; }
    KldScreen #worst { height: 1; padding: 0 1; }
    KldScreen #tokens-box { height: 1fr; padding: 0 1; }
    KldScreen #legend { height: 1; padding: 0 1; }
    """
    STARTING = CHECKING = "Reading the text and checking the models…"
    FINISHED = "Finished. n/p: chunk · [/]: quant · e: export · r: re-run · ?: help"
    CANCELLED = "e: export · corpus mode keeps no run store: r scores the quants again"
    WHAT = "corpus run"
    HELP_MODE = help.CORPUS

    def __init__(self, options: KldOptions) -> None:
        super().__init__(options)
        self.chunk = 0

    def resolve(self, options: KldOptions) -> KldSpec:
        return resolve_kld_spec(options)

    def make_fold(self, spec: KldSpec) -> LiveKld:
        return LiveKld(spec, self.app.clock)  # type: ignore[attr-defined]

    def engine(self, spec: KldSpec, factory: BackendFactory) -> Iterator[object]:
        return run_kld(spec, factory)

    def subtitle(self, spec: KldSpec) -> str:
        warning = calibration_warning(spec.calibration)
        return f"{spec.model_set.name} · {spec.source} · ctx {spec.ctx}" + (
            f" · {warning}" if warning else ""
        )

    def columns(self) -> list[tuple[str, int]]:
        return kld_columns()

    def table_columns(self, width: int) -> list[tuple[str, int]]:
        pairs = self.columns()
        return fit_columns(width, [c for c, _ in pairs], [w for _, w in pairs], KLD_PRIORITY)

    def model_cells(self, label: str, now: float) -> Sequence[str]:
        assert self.live is not None
        return kld_cells(self.live, label)

    def compose_view(self) -> ComposeResult:
        yield Static("", id="category-title")
        yield CategoryTable(id="categories")
        yield Static("", id="token-title")
        yield Static("", id="worst")
        with VerticalScroll(id="tokens-box"):
            yield Static("", id="tokens")
        yield Static(kl_legend(), id="legend")

    def event_folded(self, event: object) -> None:
        if isinstance(event, CorpusReady) and self.live is not None:
            self.set_class(len(self.live.texts) > 1, "categories")
            self.query_one(CategoryTable).build(self.live)

    def progress_text(self, model: ModelProgress[Any, Any]) -> str:
        assert self.live is not None
        return f"chunk {model.done}/{model.total} of {self.live.ctx} tokens"

    def setup_options(self) -> RunOptions:
        o = self.options
        return RunOptions(
            models_path=o.models_path,
            set_name=o.set_name,
            task=CORPUS_TASK,
            data=", ".join(str(text) for text in o.texts),
            limit=o.chunks,
            cache_dir=o.cache_dir,
            no_cache=o.no_cache,
            scoring_threads=o.scoring_threads,
        )

    def report_files(self, report: KldReport) -> tuple[str, str]:
        return f"ggflip-kld-{report.set}", render_kld_markdown(report)

    def draw_view(self, force: bool) -> None:
        live = self.live
        assert live is not None
        if len(live.texts) > 1 and self.selected is not None:
            self.query_one("#category-title", Static).update(
                Text(f"Per text (category), {self.selected}: each text chunked on its own")
            )
            self.query_one(CategoryTable).draw(live, self.selected)
        self._draw_tokens()

    def _draw_tokens(self) -> None:
        live = self.live
        assert live is not None
        title = self.query_one("#token-title", Static)
        if self.selected is None:
            title.update("No quant in this set: nothing to compare.")
            return
        scored = live.kl(self.selected, self.chunk) is not None
        note = "" if scored else f" (not scored by {self.selected} yet)"
        text = live.text_of(self.chunk)
        where = (
            f" · {text.name} chunk {self.chunk - text.first_chunk + 1}/{text.n_chunks}"
            if text is not None and len(live.texts) > 1
            else ""
        )
        title.update(
            Text(
                f"Per-token KL of {self.selected} · chunk {self.chunk + 1}/{live.n_chunks}{where}"
                f"{note} · n/p: chunk · [/]: quant"
            )
        )
        worst = live.worst_tokens(self.selected, self.chunk)
        lines = [f"largest KL: {worst}"] if worst else []
        summary = live.models[self.selected].summary
        if summary is not None and len(summary.by_position) > 1:  # one bucket: the table above
            cells = (
                f"{b.label} {b.kl_mean:.5f} · {b.same_top:.1%} · ×{b.ppl_ratio:.4f}"
                for b in summary.by_position
            )
            lines.append("KL by position (KL · same top · PPL ratio): " + " │ ".join(cells))
        self.query_one("#worst", Static).update(Text("\n".join(lines)))
        self.query_one("#tokens", Static).update(live.token_text(self.selected, self.chunk))

    def action_chunk(self, step: int) -> None:
        if self.live is None or self.live.n_chunks == 0:
            return
        self.chunk = (self.chunk + step) % self.live.n_chunks
        self._draw_tokens()
        self.query_one("#tokens-box", VerticalScroll).scroll_home(animate=False)

    def action_quant(self, step: int) -> None:
        if self.live is None or not self.live.quant_labels:
            return
        labels = self.live.quant_labels
        index = labels.index(self.selected) if self.selected in labels else 0
        self.follow = False
        self._select(labels[(index + step) % len(labels)])
        self._refresh()

"""Live state of a corpus run (`ggflip kld`) for the TUI: folds engine events, no Textual.

Running statistics come from `corpus_stats.kld_stats` over the tokens scored so far, over the
corpus and per text (category); once a quant finishes, its rows show the engine's own summary.
The per-token view is a rich Text of one chunk, each scored token's background shaded by its KL
for the selected quant.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray
from rich.text import Text

from ggflip.corpus.events import (
    BaselineKld,
    ChunkScored,
    CorpusReady,
    KldReport,
    KldStarted,
    QuantKld,
    TextInfo,
)
from ggflip.corpus.stats import KldStats, TokenScores, kld_stats, mean_and_uncertainty

# Upper bounds of the KL shades (nats) and their backgrounds, from "agrees" to "diverges".
KL_SHADES: tuple[tuple[float, str], ...] = (
    (0.001, ""),
    (0.01, "on #1f3a1f"),
    (0.05, "on #4d5a1a"),
    (0.2, "on #8a6d0a"),
    (1.0, "on #b3470e"),
    (math.inf, "bold white on #c4141d"),
)
KLD_COLUMNS = (
    "model",
    "PPL",
    "PPL ratio",
    "KL mean",
    "KL med",
    "KL p99",
    "KL max",
    "same top",
    "RMS Δp",
    "chunks",
)
KLD_WIDTHS = (18, 12, 13, 15, 6, 6, 6, 11, 6, 6)
KLD_NARROW = ("model", "PPL ratio", "KL mean", "KL p99", "same top", "chunks")
CATEGORY_COLUMNS = (
    "text",
    "chunks",
    "PPL base",
    "PPL",
    "PPL ratio",
    "KL mean",
    "KL med",
    "KL p99",
    "same top",
    "RMS Δp",
)
CATEGORY_WIDTHS = (18, 7, 12, 12, 13, 15, 6, 6, 11, 6)


def kl_style(kl: float) -> str:
    """The background style of a token whose KL is `kl`."""
    return next(style for bound, style in KL_SHADES if kl < bound)


def kl_legend(note: str = "dim: context (not scored)") -> Text:
    """One line naming each shade's KL range, then `note`."""
    legend = Text("KL: ")
    low = 0.0
    for bound, style in KL_SHADES:
        name = (
            f"<{bound:g}"
            if low == 0
            else (f"≥{low:g}" if math.isinf(bound) else f"{low:g}–{bound:g}")
        )
        legend.append(f" {name} ", style=style or "on #202020")
        legend.append(" ")
        low = bound
    if note:
        legend.append(f"  {note}", style="dim")
    return legend


def _holds(text: TextInfo, chunk: int) -> bool:
    return text.first_chunk <= chunk < text.first_chunk + text.n_chunks


def _ppl_cell(ppl: float, unc: float) -> str:
    return f"{ppl:.3f}±{unc:.3f}"


def _running_ppl(nll: dict[int, NDArray[np.float64]], chunks: list[int]) -> str:
    """The perplexity over the chunks scored so far, as a cell."""
    if not chunks:
        return "–"
    mean, unc = mean_and_uncertainty(np.concatenate([nll[c] for c in chunks]))
    return _ppl_cell(math.exp(mean), math.exp(mean) * unc)


@dataclass
class KldModel:
    """One model's progress and the per-chunk arrays the view needs."""

    label: str
    role: str
    status: str = "waiting"
    done: int = 0
    total: int = 0
    nll: dict[int, NDArray[np.float64]] = field(default_factory=dict)
    nll_base: dict[int, NDArray[np.float64]] = field(default_factory=dict)
    kl: dict[int, NDArray[np.float64]] = field(default_factory=dict)
    same_top: dict[int, NDArray[np.bool_]] = field(default_factory=dict)
    final: QuantKld | None = None
    baseline: BaselineKld | None = None

    def stats(self, text: TextInfo | None = None) -> KldStats | None:
        """The engine's summary once finished, else kld_stats over the chunks scored so far; over
        the corpus, or over one text's chunks."""
        if self.final is not None:
            if text is None:
                return self.final.stats
            return next(c.stats for c in self.final.by_category if c.name == text.name)
        order = sorted(c for c in self.kl if text is None or _holds(text, c))
        if not order:
            return None
        return kld_stats(
            TokenScores(
                np.concatenate([self.nll[c] for c in order]),
                np.concatenate([self.nll_base[c] for c in order]),
                np.concatenate([self.kl[c] for c in order]),
                np.concatenate([self.same_top[c] for c in order]),
            )
        )


class LiveKld:
    """Everything the KLD run screen draws, folded from `run_kld`'s events."""

    def __init__(self, started: KldStarted) -> None:
        self.set_name, self.source, self.ctx = started.set_name, started.source, started.ctx
        self.models = {
            label: KldModel(label, "baseline" if i == 0 else "quant")
            for i, label in enumerate(started.labels)
        }
        self.baseline_label = started.labels[0]
        self.quant_labels = list(started.labels[1:])
        self.n_chunks = 0
        self.first_scored = 0
        self.pieces: dict[int, tuple[str, ...]] = {}
        self.texts: tuple[TextInfo, ...] = ()
        self.state = "running"
        self.current: str | None = None
        self.report: KldReport | None = None

    def corpus_ready(self, event: CorpusReady) -> None:
        self.n_chunks, self.first_scored = event.n_chunks, event.first_scored
        self.texts = event.texts
        for model in self.models.values():
            model.total = event.n_chunks

    def status(self, label: str, status: str) -> None:
        self.models[label].status = status
        if status in ("loading", "scoring"):
            self.current = label

    def chunk_scored(self, event: ChunkScored) -> None:
        model = self.models[event.label]
        model.status, model.done, model.total = "scoring", event.chunk + 1, event.n_chunks
        self.current = event.label
        self.pieces.setdefault(event.chunk, event.pieces)
        model.nll[event.chunk] = event.nll
        if event.kl is not None and event.nll_base is not None and event.same_top is not None:
            model.kl[event.chunk] = event.kl
            model.nll_base[event.chunk] = event.nll_base
            model.same_top[event.chunk] = event.same_top

    def baseline_finished(self, summary: BaselineKld) -> None:
        model = self.models[summary.label]
        model.baseline, model.status = summary, "cached" if summary.from_cache else "done"
        if summary.from_cache:
            model.done = model.total

    def quant_finished(self, summary: QuantKld) -> None:
        model = self.models[summary.label]
        model.final, model.status, model.done = summary, "done", model.total

    def finished(self, report: KldReport) -> None:
        self.report, self.state, self.current = report, "finished", None

    def stopped(self, state: str) -> None:
        self.state, self.current = state, None
        for model in self.models.values():
            if model.status in ("loading", "scoring"):
                model.status = state

    def cells(self, label: str) -> list[str]:
        """One row of the statistics table, in KLD_COLUMNS order."""
        model = self.models[label]
        chunks = "cached" if model.status == "cached" else f"{model.done}/{model.total}"
        if model.role == "baseline":
            if model.baseline is not None:
                ppl = _ppl_cell(model.baseline.ppl, model.baseline.ppl_unc)
            else:
                ppl = _running_ppl(model.nll, sorted(model.nll))
            return [f"{label} (base)", ppl, "", "", "", "", "", "", "", chunks]
        s = model.stats()
        if s is None:
            return [label, *["–"] * 8, chunks]
        return [
            label,
            f"{s.ppl:.3f}±{s.ppl_unc:.3f}",
            f"{s.ppl_ratio:.4f}±{s.ppl_ratio_unc:.4f}",
            f"{s.kl_mean:.5f}±{s.kl_mean_unc:.5f}",
            f"{s.kl_median:.4f}",
            f"{s.kl_percentiles['kl_p99']:.4f}",
            f"{s.kl_max:.3f}",
            f"{100 * s.same_top:.2f}±{100 * s.same_top_unc:.2f}%",
            f"{100 * s.dp_rms:.2f}%",
            chunks,
        ]

    def text_of(self, chunk: int) -> TextInfo | None:
        """The text (category) a chunk was cut from."""
        return next((text for text in self.texts if _holds(text, chunk)), None)

    def category_cells(self, label: str, text: TextInfo) -> list[str]:
        """One row of the per-text table for quant `label`, in CATEGORY_COLUMNS order."""
        model, base = self.models[label], self.models[self.baseline_label]
        done = sum(1 for c in model.kl if _holds(text, c))
        if model.final is not None:
            done = text.n_chunks
        if base.baseline is not None:
            own = next(c for c in base.baseline.by_category if c.name == text.name)
            base_ppl = _ppl_cell(own.ppl, own.ppl_unc)
        else:
            base_ppl = _running_ppl(base.nll, sorted(c for c in base.nll if _holds(text, c)))
        s = model.stats(text)
        if s is None:
            return [text.name, f"{done}/{text.n_chunks}", base_ppl, *["–"] * 7]
        return [
            text.name,
            f"{done}/{text.n_chunks}",
            base_ppl,
            _ppl_cell(s.ppl, s.ppl_unc),
            f"{s.ppl_ratio:.4f}±{s.ppl_ratio_unc:.4f}",
            f"{s.kl_mean:.5f}±{s.kl_mean_unc:.5f}",
            f"{s.kl_median:.4f}",
            f"{s.kl_percentiles['kl_p99']:.4f}",
            f"{100 * s.same_top:.2f}±{100 * s.same_top_unc:.2f}%",
            f"{100 * s.dp_rms:.2f}%",
        ]

    def token_text(self, label: str | None, chunk: int) -> Text:
        """The chunk's text: context dim, each scored token shaded by `label`'s KL (plain if not
        scored yet)."""
        pieces = self.pieces.get(chunk)
        if pieces is None:
            return Text("This chunk is not scored yet.", style="dim")
        kl = self.models[label].kl.get(chunk) if label is not None else None
        text = Text()
        first = self.first_scored + 1
        text.append("".join(pieces[1:first]), style="dim")
        for j, piece in enumerate(pieces[first:]):
            text.append(piece, style=kl_style(float(kl[j])) if kl is not None else "")
        return text

    def worst_tokens(self, label: str, chunk: int, n: int = 5) -> str:
        """The chunk's `n` tokens of largest KL, as `piece (kl)`."""
        kl = self.models[label].kl.get(chunk)
        pieces = self.pieces.get(chunk)
        if kl is None or pieces is None:
            return ""
        first = self.first_scored + 1
        order = np.argsort(-kl)[:n]
        return "  ".join(
            f"{pieces[first + int(j)].strip() or repr(pieces[first + int(j)])} ({kl[j]:.3f})"
            for j in order
        )

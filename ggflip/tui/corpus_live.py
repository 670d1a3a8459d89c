"""What the corpus run view (`ggflip kld`) draws from the engine's fold
(`corpus.fold.CorpusFold`); no Textual.

Table cells show the fold's running statistics, over the corpus and per text (category); once a
quant finishes, the engine's own summary. The per-token view is a rich Text of one chunk, each
scored token's background shaded by its KL for the selected quant.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray
from rich.text import Text

from ggflip.corpus.events import TextInfo
from ggflip.corpus.fold import CorpusFold, holds
from ggflip.runs.events import BASELINE
from ggflip.runs.fold import CACHED

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
CONTEXT_TAIL = 16  # context tokens shown before a chunk's scored ones
# The columns a narrow terminal keeps first (`columns.fit_columns`).
KLD_PRIORITY = ("model", "PPL ratio", "KL mean", "same top", "chunks", "KL p99", "RMS Δp", "PPL")
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


def _ppl_cell(ppl: float, unc: float) -> str:
    return f"{ppl:.3f}±{unc:.3f}"


def _running_ppl_cell(value: tuple[float, float] | None) -> str:
    """A running perplexity as a cell; "–" before any chunk."""
    return "–" if value is None else _ppl_cell(*value)


class LiveKld(CorpusFold):
    """The corpus fold and what the KLD run screen draws from it: table cells, the shaded text."""

    @property
    def ctx(self) -> int:
        """Tokens per chunk."""
        return self.spec.ctx

    def cells(self, label: str) -> list[str]:
        """One row of the statistics table, in KLD_COLUMNS order."""
        model = self.models[label]
        chunks = "cached" if model.status == CACHED else f"{model.done}/{model.total}"
        if model.role == BASELINE:
            if self.baseline is not None:
                ppl = _ppl_cell(self.baseline.ppl, self.baseline.ppl_unc)
            else:
                ppl = _running_ppl_cell(self.running_ppl(label))
            return [f"{label} (base)", ppl, "", "", "", "", "", "", "", chunks]
        s = self.stats(label)
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

    def kl(self, label: str, chunk: int) -> NDArray[np.float64] | None:
        """Quant `label`'s per-token KL of one chunk; None until it is scored."""
        event = self.chunks[label].get(chunk)
        return None if event is None else event.kl

    def category_cells(self, label: str, text: TextInfo) -> list[str]:
        """One row of the per-text table for quant `label`, in CATEGORY_COLUMNS order."""
        scored = self.chunks[label]
        done = sum(1 for c, e in scored.items() if e.kl is not None and holds(text, c))
        if self.models[label].summary is not None:
            done = text.n_chunks
        if self.baseline is not None:
            own = next(c for c in self.baseline.by_category if c.name == text.name)
            base_ppl = _ppl_cell(own.ppl, own.ppl_unc)
        else:
            base_ppl = _running_ppl_cell(self.running_ppl(self.baseline_label, text))
        s = self.stats(label, text)
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
        """The chunk's text: the end of its context dim (the rest counted), each scored token
        shaded by `label`'s KL (plain if not scored yet)."""
        pieces = self.pieces.get(chunk)
        if pieces is None:
            return Text("This chunk is not scored yet.", style="dim")
        kl = self.kl(label, chunk) if label is not None else None
        text = Text()
        first = self.first_scored + 1
        context = pieces[1:first]
        if len(context) > CONTEXT_TAIL:  # the scored tokens are what to see, on any terminal
            text.append(f"[{len(context) - CONTEXT_TAIL} context tokens] …", style="dim italic")
            context = context[-CONTEXT_TAIL:]
        text.append("".join(context), style="dim")
        for j, piece in enumerate(pieces[first:]):
            text.append(piece, style=kl_style(float(kl[j])) if kl is not None else "")
        return text

    def worst_tokens(self, label: str, chunk: int, n: int = 5) -> str:
        """The chunk's `n` tokens of largest KL, as `piece (kl)`."""
        kl = self.kl(label, chunk)
        pieces = self.pieces.get(chunk)
        if kl is None or pieces is None:
            return ""
        first = self.first_scored + 1
        order = np.argsort(-kl)[:n]
        return "  ".join(
            f"{pieces[first + int(j)].strip() or repr(pieces[first + int(j)])} ({kl[j]:.3f})"
            for j in order
        )

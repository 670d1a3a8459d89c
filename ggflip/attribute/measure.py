"""How an attribution measures one model against the baseline: through an existing mode's
engine, the hybrid being just one more quant to it.

A `Measure` runs the mode's engine on the set (baseline, that model), passing the engine's events
up, and returns the model's figures: `kl_mean` always, and in multiple-choice mode `flips` (the
share of questions whose answer changed from right to wrong or back) and `n_flips`. The
baseline's record comes from the mode's cache, so after the first model each one costs one pass
of that model; `key_parts` is what the figures depend on besides the model's tensors (the text or
questions, the chunking, the record kept), for the attribution's result store.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Generator
from pathlib import Path
from typing import Any, Protocol

from ggflip.backends.base import BackendFactory
from ggflip.choice.engine import run_comparison
from ggflip.choice.events import QuantFinished, QuestionScored
from ggflip.choice.resume import key_parts
from ggflip.choice.spec import RunSpec
from ggflip.config.models_toml import ModelSpec
from ggflip.corpus.engine import run_kld
from ggflip.corpus.events import ChunkScored, QuantKldFinished
from ggflip.corpus.spec import KldSpec

Figures = dict[str, float]


@dataclasses.dataclass(frozen=True)
class ModelProgress:
    """`done` of `total` chunks (corpus) or questions (multiple choice) of the model `role`
    (baseline or quant) are scored: the mode's progress events, as a front end draws them."""

    done: int
    total: int
    role: str


def progress(event: object) -> object:
    """`event`, or the `ModelProgress` that a chunk or question scored stands for (the folds
    alone take the modes' own progress events)."""
    if isinstance(event, ChunkScored):
        return ModelProgress(event.chunk + 1, event.n_chunks, event.role)
    if isinstance(event, QuestionScored):
        return ModelProgress(event.done, event.total, event.role)
    return event


class Measure(Protocol):
    """One way of measuring a model against the baseline (corpus KL, or multiple choice)."""

    @property
    def mode(self) -> str:
        """ "corpus" or "choice"."""
        ...

    def key_parts(self) -> dict[str, Any]:
        """What the figures depend on besides the model's tensors."""
        ...

    def describe(self) -> dict[str, Any]:
        """The measurement for the report (texts or task, sizes)."""
        ...

    def measure(self, path: Path, label: str) -> Generator[object, None, Figures]:
        """Measure the GGUF at `path` against the baseline, yielding the engine's events."""
        ...


def _as_quant(baseline: ModelSpec, path: Path, label: str) -> ModelSpec:
    """The model at `path`, run with the baseline's llama settings."""
    return ModelSpec(label, path, baseline.llama)


@dataclasses.dataclass(frozen=True)
class CorpusMeasure:
    """Mean KL over a text, by `ggflip.corpus.engine.run_kld` (its spec's set gives the
    baseline; its quants are replaced by the model measured). `spec.cache_dir` must be set, or
    every model would score the baseline again."""

    spec: KldSpec
    factory: BackendFactory
    mode: str = "corpus"

    def key_parts(self) -> dict[str, Any]:
        spec = self.spec
        return {
            "mode": "kld",
            "texts": [text.sha256 for text in spec.texts],
            "ctx": spec.ctx,
            "chunks": spec.chunks,
            "top_k": spec.top_k,
            "tail_samples": spec.tail_samples,
            "score_from": spec.first_scored,
            "llama": dataclasses.asdict(spec.model_set.baseline.llama),
        }

    def describe(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "texts": [text.source for text in self.spec.texts],
            "ctx": self.spec.ctx,
            "chunks": self.spec.chunks,
        }

    def measure(self, path: Path, label: str) -> Generator[object, None, Figures]:
        model_set = self.spec.model_set
        quant = _as_quant(model_set.baseline, path, label)
        spec = dataclasses.replace(
            self.spec, model_set=dataclasses.replace(model_set, quants=(quant,))
        )
        figures: Figures = {}
        for event in run_kld(spec, self.factory):
            if isinstance(event, QuantKldFinished):
                stats = event.summary.stats
                figures = {
                    "kl_mean": stats.kl_mean,
                    "kl_mean_unc": stats.kl_mean_unc,
                    "ppl_ratio": stats.ppl_ratio,
                    "same_top": stats.same_top,
                    "n_tokens": float(stats.n_tokens),
                }
            yield progress(event)
        return figures


@dataclasses.dataclass(frozen=True)
class ChoiceMeasure:
    """Mean KL over the answer letters and flips on questions, by
    `ggflip.choice.engine.run_comparison` (no run store: the attribution stores each model's
    figures itself)."""

    spec: RunSpec
    factory: BackendFactory
    mode: str = "choice"

    def key_parts(self) -> dict[str, Any]:
        probe = self.factory.probe(self.spec.model_set.baseline)
        return {"mode": "choice", **key_parts(self.spec, probe, self.factory)}

    def describe(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "task": self.spec.task,
            "n": len(self.spec.questions.questions),
        }

    def measure(self, path: Path, label: str) -> Generator[object, None, Figures]:
        model_set = self.spec.model_set
        quant = _as_quant(model_set.baseline, path, label)
        spec = dataclasses.replace(
            self.spec,
            model_set=dataclasses.replace(model_set, quants=(quant,)),
            run_store=None,
            floor=False,
        )
        figures: Figures = {}
        for event in run_comparison(spec, self.factory):
            if isinstance(event, QuantFinished):
                summary = event.summary
                figures = {
                    "kl_mean": summary.kl_mean,
                    "flips": summary.flips,
                    "n_flips": float(summary.n_flips_lost + summary.n_flips_gained),
                    "accuracy": summary.accuracy,
                    "same_top": summary.same_top,
                }
            yield progress(event)
        return figures

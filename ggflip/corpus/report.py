"""The report of corpus mode (`ggflip kld`): the one typed definition of its `--json` document.

`KldReport.to_json` is what `--json` prints; its docstring gives the schema. A quant's (and a
text's) statistics are llama-perplexity's set (`ggflip.corpus.stats.KldStats`), then the
cache's tail check, then every registered corpus metric that is not one of those
(`ggflip.scoring.metrics`), by name.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ggflip.corpus.positions import PositionBucket
from ggflip.corpus.stats import KldStats
from ggflip.scoring import frontier, metrics
from ggflip.store.documents import finite, to_json
from ggflip.tasks.calibration import CalibrationOverlap

KLD_SCHEMA_VERSION = 1
MODE = "corpus"


@dataclass(frozen=True)
class TextInfo:
    """One text (a category) of the corpus: chunks `first_chunk` .. `first_chunk + n_chunks - 1`
    of the run are its own, cut from it alone; `tokens_scored` of them are scored."""

    name: str
    source: str
    text_sha256: str
    n_text_tokens: int
    first_chunk: int
    n_chunks: int
    tokens_scored: int


@dataclass(frozen=True)
class CacheInfo:
    """Size and fidelity of the compact baseline.

    KL from the cache is the exact KL of the baseline's top K plus the merged tail (a lower
    bound, short by P(tail)·KL(P|tail || Q|tail) per token) plus an unbiased estimate of that
    shortfall from `tail_samples` stored draws of the tail; see `QuantKld.tail`.
    """

    top_k: int
    tail_samples: int
    bytes_per_token: int
    llama_cpp_bytes_per_token: int
    size_ratio: float
    file_bytes: int
    path: str | None
    tail_mass_mean: float
    tail_mass_p99: float
    tail_mass_max: float


@dataclass(frozen=True)
class CategoryPpl:
    """The baseline's perplexity on one text."""

    name: str
    ppl: float
    ppl_unc: float


@dataclass(frozen=True)
class BaselineKld:
    """The baseline's own numbers."""

    label: str
    path: str
    ppl: float
    ppl_unc: float
    seconds: float
    from_cache: bool
    computed_with: dict[str, Any] = field(default_factory=dict)  # llama settings, build, draws
    by_category: tuple[CategoryPpl, ...] = ()
    memory: dict[str, Any] | None = None  # weights + KV at the run's ctx (gguf.memory.Memory)
    memory_unknown: str | None = None  # why `memory` is null


@dataclass(frozen=True)
class TailCheck:
    """How much of a quant's mean KL comes from the cache's tail estimate.

    `kl_mean_lower_bound` uses the top K and the merged tail only (never above the exact mean);
    `kl_tail_estimate` is the mean estimated shortfall added to it (±`kl_tail_estimate_unc`, the
    standard error of that estimate). kl_mean = kl_mean_lower_bound + kl_tail_estimate.
    """

    kl_mean_lower_bound: float
    kl_tail_estimate: float
    kl_tail_estimate_unc: float


@dataclass(frozen=True)
class CategoryKld:
    """One quant's statistics on one text alone (the same set as over the whole corpus)."""

    name: str
    stats: KldStats
    tail: TailCheck | None = None
    extra: dict[str, float] = field(default_factory=dict)  # registered metrics beyond the stats

    def to_dict(self) -> dict[str, Any]:
        tail = asdict(self.tail) if self.tail else {}
        document = {"name": self.name, **self.stats.to_dict(), **tail}
        return metrics.with_extra(document, self.extra, before=None)


@dataclass(frozen=True)
class QuantKld:
    """One quant's statistics (llama-perplexity's set) over the whole corpus and per text, the
    cache's tail share, and its time."""

    label: str
    path: str
    stats: KldStats
    seconds: float
    tail: TailCheck | None = None
    by_category: tuple[CategoryKld, ...] = ()
    extra: dict[str, float] = field(default_factory=dict)  # registered metrics beyond the stats
    memory: dict[str, Any] | None = None
    memory_unknown: str | None = None
    equivalence: dict[str, Any] | None = None  # over the chunks (`ggflip.scoring.criteria`)
    chunk_kl: tuple[float, ...] = ()  # each chunk's mean KL, in the run's chunk order
    settings: dict[str, Any] = field(default_factory=dict)  # llama settings unlike the baseline's
    by_position: tuple[PositionBucket, ...] = ()  # KL by position in the chunk
    imatrix: dict[str, Any] = field(default_factory=dict)  # the GGUF's imatrix provenance

    def to_dict(self) -> dict[str, Any]:
        tail = asdict(self.tail) if self.tail else {}
        document = {
            "label": self.label,
            "path": self.path,
            "settings": self.settings,
            "imatrix": self.imatrix,
            "seconds": self.seconds,
            "memory": self.memory,
            "memory_unknown": self.memory_unknown,
            **self.stats.to_dict(),
            **tail,
            "equivalence": finite(self.equivalence),
            "chunk_kl": finite(list(self.chunk_kl)),
            "by_category": [category.to_dict() for category in self.by_category],
            "by_position": [bucket.to_dict() for bucket in self.by_position],
        }
        return metrics.with_extra(document, self.extra, before="by_category")


@dataclass(frozen=True)
class KldReport:
    """The result of `ggflip kld`; `to_json` is the one document `--json` prints:

    ```
    {"schema", "mode": "kld", "set", "source", "text_sha256", "ctx", "n_chunks", "n_text_tokens",
     "tokens_scored", "complete",
     "texts": [{"name", "source", "text_sha256", "n_text_tokens", "first_chunk", "n_chunks",
                "tokens_scored"}],
     "cache": null | {<CacheInfo>},
     "baseline": null | {"label", "path", "ppl", "ppl_unc", "seconds", "from_cache",
                         "by_category": [{"name", "ppl", "ppl_unc"}], "memory",
                         "memory_unknown"},
     "calibration": [{"file", "n_windows", "overlapping", "share", "warn"}],
     "quants": [{"label", "path", "settings": {name: value}, "imatrix": {...}, "seconds",
                 "memory", "memory_unknown", <KldStats.to_dict()>, <TailCheck>,
                 "equivalence": {"verdict", "n_more", "criteria": {"kl_mean": {...}}},
                 "chunk_kl": [float],
                 <extra metrics>,
                 "by_category": [{"name", <KldStats.to_dict()>, <TailCheck>, <extra metrics>}],
                 "by_position": [{"lo", "hi", "n_tokens", "kl_mean", "same_top",
                                  "ppl_ratio"}]}],
     "frontier": {<ggflip.scoring.frontier.frontier_object: memory against mean KL>}}
    ```

    `memory` is the model's weights + KV cache at `ctx` (`ggflip.gguf.memory.Memory.to_json`;
    null, with `memory_unknown` saying why, when its cache cannot be sized).

    `equivalence` judges the mean KL over the chunks, each chunk's mean KL one independent unit
    (tokens within a chunk share their context, so they are not independent;
    `ggflip.scoring.criteria`); `chunk_kl` holds those units, one per chunk in the run's order,
    which quant-against-quant comparisons pair (`ggflip.scoring.versus`). `by_category` follows
    `texts`' order, one entry per text, also for a single text. The extra metrics are the
    registered corpus metrics with a kernel that are not a key before them.
    `settings` holds the quant's llama settings unlike the baseline's (a KV-cache type...);
    `by_position` the position buckets holding scored tokens (`ggflip.corpus.positions`).
    `calibration` has one `{"file", "n_windows", "overlapping", "share", "warn"}` per
    `--calibration` file (`ggflip.tasks.calibration`).
    """

    set: str
    source: str
    text_sha256: str
    ctx: int
    n_chunks: int
    n_text_tokens: int
    tokens_scored: int
    cache: CacheInfo | None
    baseline: BaselineKld | None
    quants: tuple[QuantKld, ...] = field(default_factory=tuple)
    complete: bool = True
    texts: tuple[TextInfo, ...] = ()
    calibration: tuple[CalibrationOverlap, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        document = {
            "schema": KLD_SCHEMA_VERSION,
            "mode": "kld",
            "set": self.set,
            "source": self.source,
            "text_sha256": self.text_sha256,
            "ctx": self.ctx,
            "n_chunks": self.n_chunks,
            "n_text_tokens": self.n_text_tokens,
            "tokens_scored": self.tokens_scored,
            "texts": [asdict(text) for text in self.texts],
            "complete": self.complete,
            "cache": asdict(self.cache) if self.cache else None,
            "baseline": asdict(self.baseline) if self.baseline else None,
            "quants": [quant.to_dict() for quant in self.quants],
            "calibration": [asdict(overlap) for overlap in self.calibration],
        }
        document["frontier"] = frontier.frontier_object(finite(document))
        return document

    def to_json(self) -> str:
        """The report as JSON; NaN and infinities become null."""
        return to_json(self.to_dict())

"""A corpus run's description (`KldSpec`): the models, the texts, the chunking and the record kept.

Both front ends build one (`ggflip.corpus.setup`) and hand it to `ggflip.corpus.engine.run_kld`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from ggflip.config.models_toml import ModelSet
from ggflip.corpus.events import TextInfo
from ggflip.corpus.texts import CorpusText
from ggflip.errors import UsageError, check_counts
from ggflip.scoring.equivalence import DEFAULT_MARGINS, Margins
from ggflip.scoring.topk import DEFAULT_TAIL_SAMPLES
from ggflip.tasks.calibration import CalibrationOverlap

DEFAULT_CTX = 512
DEFAULT_CORPUS_TOP_K = 512
SAMPLING_SEED = 20250705
CHUNKING_VERSION = "llama-perplexity-1"


@dataclass(frozen=True)
class KldSpec:
    """Everything that defines a corpus run; both front ends build one and call `run_kld`.

    `texts` are the categories, scored in this order; `chunks` caps the chunks of each text.
    """

    model_set: ModelSet
    texts: tuple[CorpusText, ...]
    ctx: int = DEFAULT_CTX
    chunks: int | None = None
    cache_dir: Path | None = None
    top_k: int = DEFAULT_CORPUS_TOP_K
    tail_samples: int = DEFAULT_TAIL_SAMPLES
    block_rows: int = 32
    scoring_threads: int | None = None  # None: the cores llama.cpp leaves free; 0: no overlap
    margins: Margins = DEFAULT_MARGINS  # of each quant's equivalence to the baseline
    score_from: int | None = None  # a chunk's first scored position; None: ctx/2 (llama's)
    calibration: tuple[CalibrationOverlap, ...] = ()  # the texts against --calibration files

    def __post_init__(self) -> None:
        if not self.texts:
            raise UsageError("give at least one --text FILE or folder")
        if self.ctx < 8:
            raise UsageError(f"--ctx must be at least 8, got {self.ctx}")
        if self.score_from is not None and not 0 <= self.score_from <= self.ctx - 2:
            raise UsageError(
                f"--score-from must be between 0 and ctx - 2 = {self.ctx - 2}, got "
                f"{self.score_from}"
            )
        check_counts(
            {"--chunks": self.chunks, "--top-k": self.top_k},
            {"--tail-samples": self.tail_samples, "--scoring-threads": self.scoring_threads},
        )

    @property
    def first_scored(self) -> int:
        """Position of the first scored logits row (llama.cpp's `first = n_ctx/2`, or
        `score_from`: 0 scores every position, so KL by position covers the whole context)."""
        return self.ctx // 2 if self.score_from is None else self.score_from

    @property
    def rows_per_chunk(self) -> int:
        """Scored tokens per chunk: ctx - 1 - first_scored."""
        return self.ctx - 1 - self.first_scored

    @property
    def source(self) -> str:
        """The texts' paths, for titles and the report."""
        return ", ".join(text.source for text in self.texts)

    @property
    def text_sha256(self) -> str:
        """The one text's digest; for several, the digest of their digests in order."""
        if len(self.texts) == 1:
            return self.texts[0].sha256
        joined = "\n".join(text.sha256 for text in self.texts)
        return hashlib.sha256(joined.encode()).hexdigest()


def text_infos(spec: KldSpec, counts: list[tuple[int, int]]) -> tuple[TextInfo, ...]:
    """Each text's place in the run from its (tokens, chunks), in the spec's order."""
    infos, first = [], 0
    for text, (n_tokens, n_chunks) in zip(spec.texts, counts):
        infos.append(
            TextInfo(
                text.name,
                text.source,
                text.sha256,
                n_tokens,
                first,
                n_chunks,
                n_chunks * spec.rows_per_chunk,
            )
        )
        first += n_chunks
    return tuple(infos)

"""`RunSpec`: everything that defines a multiple-choice run; both front ends build one."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from ggflip.choice.row_store import RowStore
from ggflip.config.models_toml import ModelSet
from ggflip.runs.kv_streams import with_kv_streams
from ggflip.scoring.equivalence import DEFAULT_MARGINS, Margins
from ggflip.scoring.topk import DEFAULT_TAIL_SAMPLES
from ggflip.tasks.calibration import CalibrationOverlap
from ggflip.tasks.prompts import PromptSet, render_prompts
from ggflip.tasks.questions import QuestionSet
from ggflip.tasks.registry import get_task

DEFAULT_TOP_K = 512

# Cloze keeps a short top K and more tail draws: on real Gemma 3 270M cloze rows the tail outside
# the top 64 holds 20-35 % of a row's KL, and S = 128 draws bring its per-row error under 5 % (p90)
# at 1,556 bytes a row, where K = 256 with 32 draws needs 2,324 (docs/metrics.md, cache exactness).
DEFAULT_CLOZE_TOP_K = 64
DEFAULT_CLOZE_TAIL_SAMPLES = 128


@dataclass(frozen=True)
class RunSpec:
    """Everything that defines a run; both front ends build one and call `run_comparison`."""

    model_set: ModelSet
    questions: QuestionSet
    task: str = "mmlu"
    cache_dir: Path | None = None
    top_k: int | None = None
    batch_size: int = 4
    run_store: RowStore | None = None
    resume: bool = True
    prompts: PromptSet | None = None
    share_prefixes: bool = True
    tail_samples: int | None = None  # baseline tail draws per scored position (None: default)
    floor: bool = False
    scoring_threads: int | None = None  # None: the cores llama.cpp leaves free; 0: no overlap
    margins: Margins = DEFAULT_MARGINS  # of each quant's equivalence to the baseline
    calibration: tuple[CalibrationOverlap, ...] = ()  # the questions against --calibration files

    @property
    def prompt_set(self) -> PromptSet:
        """The rendered prompts: as given, else MMLU's zero-shot letter prompt for every
        question."""
        if self.prompts is not None:
            return self.prompts
        return render_prompts(get_task("mmlu"), self.questions.questions, lambda q: (), 0)

    @property
    def resolved_top_k(self) -> int:
        """K of the baseline cache: as given, else 512 for letter and 64 for cloze questions."""
        if self.top_k is not None:
            return self.top_k
        return DEFAULT_CLOZE_TOP_K if self.prompt_set.mode == "cloze" else DEFAULT_TOP_K

    @property
    def resolved_tail_samples(self) -> int:
        """Tail draws of the baseline cache: as given, else 32 for letter and 128 for cloze."""
        if self.tail_samples is not None:
            return self.tail_samples
        cloze = self.prompt_set.mode == "cloze"
        return DEFAULT_CLOZE_TAIL_SAMPLES if cloze else DEFAULT_TAIL_SAMPLES


def floor_batch_size(batch_size: int) -> int:
    """Questions per llama.cpp call of the noise floor's second baseline pass: another grouping.

    One question per decode when the run packs several, else four.
    """
    return 1 if batch_size > 1 else 4


def shares_prefixes(spec: RunSpec) -> bool:
    """Whether the run's requests may share a prefix: with prefix reuse on, a cloze question's
    choices share their context, and few-shot letter prompts their shots (a 0-shot letter run's
    only common text is the task's header, not worth sharing)."""
    prompt_set = spec.prompt_set
    return spec.share_prefixes and (prompt_set.mode == "cloze" or prompt_set.n_shots > 0)


def groups_by_length(spec: RunSpec) -> bool:
    """Whether the run's llama.cpp calls group questions by prompt length rather than in question
    order (`ggflip.choice.loop._groups`): when its requests share no prefix (each on a KV stream
    of its own) and a call holds more than one question. Prefix sharing needs question order
    (consecutive questions of a subject share their shots)."""
    return spec.batch_size > 1 and not shares_prefixes(spec)


def kv_layout(spec: RunSpec) -> RunSpec:
    """`spec` with its models' KV cache laid out for its requests: unchanged when they may share
    a prefix (which needs llama.cpp's unified cache), else a stream per sequence (`kv_unified`
    off, which attends over each sequence's own cells only: faster), in as many streams as one
    llama.cpp call of the run (or of its noise floor) fills: a request per question, or per
    choice in cloze mode. The layout keys the baseline (`ggflip.backends.numerics`), so
    baselines of either layout are never mixed."""
    if shares_prefixes(spec):
        return spec
    per_question = 1
    if spec.prompt_set.mode == "cloze":
        per_question = max(len(q.choices) for q in spec.questions.questions)
    streams = max(spec.batch_size, floor_batch_size(spec.batch_size)) * per_question
    return dataclasses.replace(spec, model_set=with_kv_streams(spec.model_set, streams))

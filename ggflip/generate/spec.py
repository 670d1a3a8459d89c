"""`GenSpec`: everything that defines a generation run, and how its prompts are rendered.

A question of `n` turns is `n` units, numbered round-major (every question's first turn, then
every second turn, ...). A later turn is asked after the **baseline's** answers to the earlier
ones, for every model, so each quant is compared on the same prompts as the baseline. Without
`chat` the turns are joined as the task's template (`Question: ...\\nAnswer: <answer>`); with
it the model's `tokenizer.chat_template` renders them (Jinja, like llama.cpp's tools), an
optional system message first, the baseline's template for every model of the set.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ggflip.config.models_toml import ModelSet
from ggflip.errors import DataError
from ggflip.runs.kv_streams import with_kv_streams
from ggflip.scoring.equivalence import DEFAULT_MARGINS, Margins
from ggflip.store.rowdb import RowStore
from ggflip.tasks.generation import GenItem, GenTask, render_plain

DEFAULT_GEN_TOP_K = 256
DEFAULT_GEN_TAIL_SAMPLES = 32


@dataclass(frozen=True)
class GenSpec:
    """Everything that defines a generation run; front ends build one and call `run_generation`."""

    model_set: ModelSet
    task: GenTask
    items: tuple[GenItem, ...]
    source: str
    selection: str = ""  # which prompts --limit took, in words
    shots: tuple[GenItem, ...] = ()
    chat: bool = False
    system: str | None = None
    max_new_tokens: int | None = None
    batch_size: int = 4
    top_k: int = DEFAULT_GEN_TOP_K
    tail_samples: int = DEFAULT_GEN_TAIL_SAMPLES
    cache_dir: Path | None = None
    run_store: RowStore | None = None
    resume: bool = True
    scoring_threads: int | None = None  # None: the cores llama.cpp leaves free; 0: no overlap
    margins: Margins = DEFAULT_MARGINS  # of each quant's equivalence to the baseline

    @property
    def new_tokens(self) -> int:
        return self.max_new_tokens if self.max_new_tokens is not None else self.task.max_new_tokens

    @property
    def n_turns(self) -> int:
        return max(len(item.turns) for item in self.items)

    def units(self) -> list[tuple[int, int]]:
        """(item index, turn) of every unit, in unit-index order (round-major)."""
        return [
            (i, turn)
            for turn in range(self.n_turns)
            for i, item in enumerate(self.items)
            if turn < len(item.turns)
        ]


def kv_layout(spec: GenSpec) -> GenSpec:
    """`spec` with its models on a KV stream per sequence (`kv_unified` off: each sequence
    attends over its own cells only, faster), one per prompt of a batch, when its prompts share
    no prefix (chat prompts, or plain ones without shots); unchanged when they share the shots,
    which needs llama.cpp's unified cache. The layout keys the baseline."""
    if spec.shots and not spec.chat:
        return spec
    return dataclasses.replace(spec, model_set=with_kv_streams(spec.model_set, spec.batch_size))


def render_chat(
    template: str, messages: Sequence[dict[str, str]], bos: str, eos: str, where: str
) -> str:
    """A conversation through a Jinja chat template, with the generation prompt added.

    Raises:
        DataError: the template does not render.
    """
    import jinja2
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise jinja2.TemplateError(message)

    try:
        environment = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        return environment.from_string(template).render(
            messages=list(messages),
            bos_token=bos,
            eos_token=eos,
            add_generation_prompt=True,
            raise_exception=raise_exception,
        )
    except jinja2.TemplateError as exc:
        raise DataError(f"{where}: the chat template does not render: {exc}") from None


def conversation(
    spec: GenSpec, item: GenItem, turn: int, answers: Sequence[str]
) -> list[dict[str, str]]:
    """The chat messages of `turn` of `item`, after the baseline's `answers` to earlier turns."""
    messages = [{"role": "system", "content": spec.system}] if spec.system else []
    for earlier in range(turn):
        messages.append({"role": "user", "content": item.turns[earlier]})
        messages.append({"role": "assistant", "content": answers[earlier].strip()})
    messages.append({"role": "user", "content": item.turns[turn]})
    return messages


def plain_prompt(
    spec: GenSpec, item: GenItem, turn: int, answers: Sequence[str]
) -> tuple[str, str]:
    """(prompt, shared few-shot prefix) of a turn without the chat template."""
    task = spec.task
    history = "".join(
        task.template.format(prompt=item.turns[t]) + answers[t] + "\n\n" for t in range(turn)
    )
    whole, prefix = render_plain(task, spec.shots, item.turns[turn])
    return prefix + history + whole[len(prefix) :], prefix

"""Multiple choice (letter and cloze) baselines as packs: export a run's cache entry, run from one.

The entry is the baseline cache's `baselines/<key>.npz` and `.json` (`ggflip.choice.cache`);
the manifest adds the task, every question (the rows as loaded and selected) and every rendered
prompt with its digest, and the record's K and S, so a run from the pack needs neither the
baseline model nor the question data.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ggflip.backends.base import BackendFactory
from ggflip.choice.cache import BaselineCache
from ggflip.choice.resume import key_parts
from ggflip.choice.setup import RunOptions, resolve_questions, run_spec
from ggflip.choice.spec import RunSpec, kv_layout
from ggflip.config.models_toml import ModelSet
from ggflip.errors import PackError, UsageError
from ggflip.packs.archive import Pack, write_pack
from ggflip.packs.baseline import (
    PackFactory,
    check_key,
    install_pack,
    manifest_head,
    pack_factory,
    pack_model_set,
)
from ggflip.scoring.record import PositionRecord
from ggflip.store.keys import cache_key
from ggflip.tasks.prompts import PromptSet, RenderedQuestion
from ggflip.tasks.questions import Question, QuestionSet, SkippedRow

MODE = "choice"


def tuples(value: Any) -> Any:
    """JSON lists back into the tuples the frozen dataclasses hold."""
    if isinstance(value, list):
        return tuple(tuples(item) for item in value)
    if isinstance(value, dict):
        return {name: tuples(item) for name, item in value.items()}
    return value


def _question_set(data: Mapping[str, Any]) -> QuestionSet:
    return QuestionSet(
        source=data["source"],
        questions=tuple(Question(**tuples(q)) for q in data["questions"]),
        skipped=tuple(SkippedRow(**row) for row in data["skipped"]),
        selection=data["selection"],
    )


def _prompt_set(data: Mapping[str, Any]) -> PromptSet:
    items = tuple(RenderedQuestion(**tuples(item)) for item in data["items"])
    return PromptSet(data["version"], data["mode"], data["answer_rule"], data["n_shots"], items)


def _prompt_digest(item: RenderedQuestion) -> str:
    blob = json.dumps([item.contexts, item.continuations])
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def export_choice(spec: RunSpec, factory: BackendFactory, out: Path) -> Pack:
    """Write the pack of `spec`'s baseline, whose entry must be in the cache (a run of `spec`
    put it there).

    Raises:
        PackError: the cache holds no entry for this baseline.
    """
    spec = kv_layout(spec)  # as `run_comparison` laid it out, so the key is the run's
    model_set = spec.model_set
    probe = factory.probe(model_set.baseline)
    parts = key_parts(spec, probe, factory)
    key = cache_key(parts)
    assert spec.cache_dir is not None
    k, s, n = spec.resolved_top_k, spec.resolved_tail_samples, len(spec.questions.questions)
    cached = BaselineCache(spec.cache_dir).load(key, n, min(k, probe.n_vocab), s)
    if cached is None:
        raise PackError(f"{spec.cache_dir}: no baseline entry for this run; run it first")
    scores, skips = cached
    prompts = spec.prompt_set
    manifest = {
        **manifest_head(MODE, model_set, probe, factory, model_set.baseline, parts),
        "task": spec.task,
        "settings": {
            "top_k": k,
            "tail_samples": s,
            "batch_size": spec.batch_size,
            "share_prefixes": spec.share_prefixes,
        },
        "counts": {
            "questions": n,
            "skipped": len(skips),
            "scored_positions": int(scores.row_offsets[-1]),
            # the record and the full-vocabulary argmax (int32)
            "bytes_per_position": PositionRecord.bytes_per_row(min(k, probe.n_vocab), s) + 4,
        },
        "inputs": {
            "questions_digest": spec.questions.digest(),
            "prompts_digest": prompts.digest(),
            "prompt_digests": [_prompt_digest(item) for item in prompts.items],
            "questions": dataclasses.asdict(spec.questions),
            "prompts": dataclasses.asdict(prompts),
        },
    }
    folder = spec.cache_dir / "baselines"
    files = {f"baselines/{key}{ext}": folder / f"{key}{ext}" for ext in (".npz", ".json")}
    return write_pack(out, manifest, files)


def choice_spec_from_pack(
    pack: Pack, options: RunOptions, model_set: ModelSet, task_given: bool
) -> RunSpec:
    """The run of `model_set`'s quants against the pack's baseline: the pack's task, questions
    and prompts unless a task or data is given (then they must be the pack's), and the pack's
    K, S, batching and prefix sharing unless given (then the key check refuses a difference).

    Raises:
        PackError: the given questions or prompts differ from the pack's.
    """
    manifest = pack.manifest
    inputs, settings = manifest["inputs"], manifest["settings"]
    task, questions, prompts = manifest["task"], _question_set(inputs["questions"]), None
    prompts = _prompt_set(inputs["prompts"])
    selecting = (options.limit, options.subjects, options.seed is not None, options.first)
    rendering = (options.task_file, options.mode, options.shots is not None, options.fields)
    if task_given or options.data or any(selecting) or any(rendering):
        task, given, given_prompts = resolve_questions(options)
        if given.digest() != questions.digest():
            raise PackError(
                f"{pack.path}: the questions differ from the pack's ({len(given.questions)} "
                f"here, {len(questions.questions)} in the pack, or other rows); drop "
                "--task/--data/--limit to use the pack's"
            )
        if given_prompts.digest() != prompts.digest():
            raise PackError(
                f"{pack.path}: the prompts differ from the pack's ({given_prompts.version} here, "
                f"{prompts.version} in the pack); drop --task/--mode/--shots to use the pack's"
            )
    options = dataclasses.replace(
        options,
        top_k=settings["top_k"] if options.top_k is None else options.top_k,
        tail_samples=(
            settings["tail_samples"] if options.tail_samples is None else options.tail_samples
        ),
        batch_size=options.batch_size or settings["batch_size"],
        prefix_reuse=options.prefix_reuse and settings["share_prefixes"],
    )
    return run_spec(options, model_set, task, questions, prompts)


def choice_run_from_pack(
    pack: Pack,
    options: RunOptions,
    task_given: bool,
    allow_numerics_mismatch: bool = False,
) -> tuple[RunSpec, PackFactory]:
    """The spec and factory of a multiple-choice run against the pack's baseline, with the pack's
    entry installed in the cache: `run_comparison(spec, factory)` then never opens the baseline.

    Raises:
        UsageError, PackError, ConfigError, ModelFileError, DataError: before anything runs.
    """
    if options.floor:
        raise UsageError("--floor scores the baseline model again; it cannot run from a pack")
    model_set = pack_model_set(
        pack,
        options.quants,
        options.models_path,
        options.set_name,
        options.quant_settings,
        options.baseline,
    )
    model_set, factory = pack_factory(model_set, pack.manifest["baseline"], allow_numerics_mismatch)
    spec = kv_layout(choice_spec_from_pack(pack, options, model_set, task_given))
    check_key(key_parts(spec, factory.probe(model_set.baseline), factory), pack.manifest)
    install_pack(pack, spec.cache_dir, model_set.quants)
    return spec, factory

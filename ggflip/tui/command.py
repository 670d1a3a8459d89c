"""`ggflip tui` (and `ggflip` alone on a terminal): open the app with the flags as the setup's
defaults."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from ggflip.choice.setup import RunOptions
from ggflip.config.resolve import choose_model_set
from ggflip.corpus.setup import kld_options
from ggflip.errors import ExitCode, ModelFileError, UsageError
from ggflip.generate.setup import GenOptions
from ggflip.runs.pipeline import requested_workers
from ggflip.tui.gen_live import gen_options
from ggflip.tui.pack_run import PackRun, open_pack_run, pack_options


def tui_options(args: argparse.Namespace) -> RunOptions:
    """The TUI's starting choices from whatever flags the command line gave (all optional)."""
    return RunOptions(
        models_path=getattr(args, "models", None) or Path("models.toml"),
        set_name=getattr(args, "set_name", None),
        baseline=getattr(args, "baseline", None),
        quants=tuple(getattr(args, "quant", None) or ()),
        quant_settings=tuple(getattr(args, "quant_settings", None) or ()),
        calibration=tuple(getattr(args, "calibration", None) or ()),
        task=getattr(args, "task", None) or "mmlu",
        task_file=getattr(args, "task_file", None),
        fields=tuple(getattr(args, "field", None) or ()),
        mode=getattr(args, "mode", None),
        shots=getattr(args, "shots", None),
        shots_from=getattr(args, "shots_from", None),
        data=getattr(args, "data", None),
        limit=getattr(args, "limit", None),
        seed=getattr(args, "seed", None),
        first=bool(getattr(args, "first", False)),
        subjects=tuple(getattr(args, "subject", None) or ()),
        cache_dir=getattr(args, "cache_dir", None),
        no_cache=bool(getattr(args, "no_cache", False)),
        batch_size=getattr(args, "batch_size", None) or 4,
        floor=not getattr(args, "no_floor", False),
        scoring_threads=requested_workers(
            bool(getattr(args, "no_overlap", False)), getattr(args, "scoring_threads", None)
        ),
    )


def tui_gen_options(args: argparse.Namespace, options: RunOptions) -> GenOptions | None:
    """The generation run `ggflip tui --task gsm8k|prompts|mt_bench` opens on; None otherwise."""
    return gen_options(
        options,
        chat=bool(getattr(args, "chat", False)),
        system=getattr(args, "system", None),
        max_new_tokens=getattr(args, "max_new_tokens", None),
    )


def tui_pack(args: argparse.Namespace, options: RunOptions) -> PackRun:
    """`--baseline-pack PACK`: the pack, checked as its run of `options` will use it (a bad
    pack, model or numerics mismatch is one line before the app opens).

    Raises:
        UsageError: with `--text` or a generation task (the TUI runs multiple-choice packs);
            PackError, ConfigError, ModelFileError, DataError: as `choice_run_from_pack`.
    """
    if getattr(args, "text", None) is not None:
        raise UsageError("the TUI runs multiple-choice packs; use `ggflip kld --baseline-pack`")
    task_given = getattr(args, "task", None) is not None
    return open_pack_run(args.baseline_pack, options, task_given, args.allow_numerics_mismatch)


def tui_command(args: argparse.Namespace) -> int:
    """Run the app until the user quits; with `--text`, open straight on corpus mode (KLD run),
    with a generation task on the generation run."""
    from ggflip.tui.app import GgflipApp

    options, pack = tui_options(args), None
    if getattr(args, "baseline_pack", None):  # the pack's batching unless --batch-size
        options = pack_options(dataclasses.replace(options, batch_size=args.batch_size or 0))
        pack = tui_pack(args, options)
    elif options.baseline is not None or options.quants:  # a bad file: one line, before the app
        files = choose_model_set(options.models_path, None, options.baseline, options.quants)
        for model in files.models:
            if not model.path.is_file():
                raise ModelFileError(f"{model.path}: model file not found")
    gen = tui_gen_options(args, options)
    kld = kld_options(args) if getattr(args, "text", None) is not None else None
    if pack is not None:
        kld = gen = None  # a multiple-choice pack: its run, never corpus or generation mode
    GgflipApp(
        options,
        export_dir=getattr(args, "export_dir", None),
        kld=kld,
        gen=None if kld else gen,
        pack=pack,
    ).run()
    return int(ExitCode.OK)

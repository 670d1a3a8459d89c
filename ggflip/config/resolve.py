"""Which set of a models file to run, and that set with its `hf://` references resolved to local
files (downloaded once). Every mode resolves its models here."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

from ggflip.config.from_files import CLI_SET_NAME, model_set_from_files
from ggflip.config.models_toml import ModelsConfig, ModelSet, ModelSpec, load_models_toml
from ggflip.config.settings_quants import with_settings_quants
from ggflip.errors import UsageError
from ggflip.gguf.hf import resolve_hf


def resolve_model_set(model_set: ModelSet) -> ModelSet:
    """The set with every `hf://` model's path pointing at its cached local file.

    Raises:
        ModelFileError: as `resolve_hf`.
    """

    def resolved(spec: ModelSpec) -> ModelSpec:
        return dataclasses.replace(spec, path=resolve_hf(spec.ref)) if spec.ref else spec

    return dataclasses.replace(
        model_set,
        baseline=resolved(model_set.baseline),
        quants=tuple(resolved(q) for q in model_set.quants),
    )


def choose_set_name(config: ModelsConfig, set_name: str | None, where: Path) -> str:
    """The set to run: the one named, else the file's only set.

    Raises:
        UsageError: no name given and the file holds zero or several sets.
    """
    if set_name is not None:
        return set_name
    if len(config.sets) != 1:
        raise UsageError(
            f"{where}: choose a set with --set ({', '.join(sorted(config.sets)) or 'none defined'})"
        )
    return next(iter(config.sets))


def choose_model_set(
    models_path: Path,
    set_name: str | None,
    baseline: str | None,
    quants: Sequence[str],
    quant_settings: Sequence[str] = (),
) -> ModelSet:
    """The set named in the models file, or the one given by `--baseline` and `--quant`, with
    the `--quant-settings` quants added (`settings_quants.with_settings_quants`) and `hf://`
    references resolved.

    Raises:
        UsageError: both or half of the two ways given, or bad `--quant-settings`;
            ConfigError, ModelFileError: as loaded.
    """
    if baseline is not None or quants:
        if set_name not in (None, CLI_SET_NAME):  # the files' own set, as a setup form names it
            raise UsageError(
                "--set and --baseline/--quant are alternatives: use a models.toml set or name the "
                "files"
            )
        if baseline is None or not (quants or quant_settings):
            raise UsageError(
                "without a models.toml set, give --baseline FILE and at least one --quant "
                "FILE|DIR|GLOB or --quant-settings NAME=VALUE,..."
            )
        model_set = model_set_from_files(baseline, quants)
    else:
        config = load_models_toml(models_path)
        model_set = config.get_set(choose_set_name(config, set_name, models_path))
    return resolve_model_set(with_settings_quants(model_set, quant_settings))


def models_for_setup(
    models_path: Path, baseline: str | None, quants: Sequence[str]
) -> ModelsConfig:
    """The sets a setup form offers: the models file's, or with `--baseline`/`--quant` the one
    set those files make (`hf://` resolved; running it by its name keeps the files).

    Raises:
        UsageError, ConfigError, ModelFileError: as `choose_model_set` and `load_models_toml`.
    """
    if baseline is None and not quants:
        return load_models_toml(models_path)
    model_set = choose_model_set(models_path, None, baseline, quants)
    return ModelsConfig(Path("--baseline/--quant"), {model_set.name: model_set})

"""`ggflip tui --baseline-pack PACK`: the TUI's multiple-choice run against a baseline pack.

Nothing here runs a comparison: the models, the spec and the `PackFactory` come from the same
entry points `ggflip run --baseline-pack` uses (`packs.baseline.pack_model_set`,
`packs.choice.choice_run_from_pack`); the setup view shows the pack's baseline instead of the
question fields, and never a floor (a pack cannot score its baseline again).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from ggflip.choice.setup import RunOptions
from ggflip.choice.spec import RunSpec
from ggflip.config.models_toml import ModelsConfig
from ggflip.packs.archive import Pack
from ggflip.packs.baseline import PackFactory, baseline_probe, open_mode_pack, pack_model_set
from ggflip.packs.choice import MODE, choice_run_from_pack


@dataclass(frozen=True)
class PackRun:
    """The pack a TUI session compares against, and the flags that go with it."""

    pack: Pack
    task_given: bool = False
    allow_numerics_mismatch: bool = False

    def run(self, options: RunOptions) -> tuple[RunSpec, PackFactory]:
        """The run's spec and factory, the pack's entry installed (`choice_run_from_pack`).

        Raises:
            UsageError, PackError, ConfigError, ModelFileError, DataError: as that function.
        """
        return choice_run_from_pack(
            self.pack, pack_options(options), self.task_given, self.allow_numerics_mismatch
        )

    def models(self, options: RunOptions) -> ModelsConfig:
        """The setup's one set: the quants with the pack's baseline (`pack_model_set`)."""
        options = pack_options(options)
        model_set = pack_model_set(
            self.pack,
            options.quants,
            options.models_path,
            options.set_name,
            options.quant_settings,
            options.baseline,
        )
        return ModelsConfig(Path("--baseline-pack"), {model_set.name: model_set})

    def baseline_facts(self) -> tuple[int, int, float, None]:
        """The baseline file's size, parameter count and bits per weight as the pack records
        them (the file itself is not here), and no problem: the setup's model row."""
        probe = baseline_probe(self.pack.manifest["baseline"])
        return probe.file_size, probe.n_params, probe.bits_per_weight, None

    def description(self) -> str:
        """The pack's baseline for the setup view: label, file, task, questions, no floor."""
        manifest = self.pack.manifest
        facts = manifest["baseline"]
        return (
            f"baseline from the pack {self.pack.path.name}: {facts['label']} ({facts['file']}), "
            f"task {manifest['task']}, {manifest['counts']['questions']} questions; "
            "the pack's questions and settings, no floor (the baseline is never opened)"
        )


def pack_options(options: RunOptions) -> RunOptions:
    """`options` for a pack's run: no floor (it would score the baseline again), and the setup's
    set name dropped where `--quant` files make the set (as `run` takes them)."""
    set_name = None if options.quants else options.set_name
    return dataclasses.replace(options, floor=False, set_name=set_name)


def open_pack_run(
    ref: str, options: RunOptions, task_given: bool, allow_numerics_mismatch: bool
) -> PackRun:
    """The pack `ref` names, checked as the run will use it (models, questions, key, numerics),
    so a bad pack or pairing is one line before the app opens.

    Raises:
        PackError, UsageError, ConfigError, ModelFileError, DataError: what the run would raise.
    """
    pack_run = PackRun(open_mode_pack(ref, MODE), task_given, allow_numerics_mismatch)
    pack_run.run(options)
    return pack_run

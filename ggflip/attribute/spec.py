"""An attribution's description (`AttributeSpec`): the files, the grouping, the measurement and
the recipe's budget and check. `ggflip.attribute.setup` builds one from a user's options and
`ggflip.attribute.engine.run_attribution` runs it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ggflip.attribute.measure import Measure
from ggflip.attribute.store import ResultStore


@dataclass(frozen=True)
class AttributeSpec:
    """An attribution: the files, how tensors are grouped, how models are measured, and the
    recipe's budget and check.

    `source` is the file a recovery takes a group from (None: the baseline). `work_dir` is where
    the temporary folder of hybrids is made (None: the system's temporary folder). `verify`
    measures the recipe's model, the quant and `compare` (uniform quants) on held-out data.
    """

    baseline: Path
    quant: Path
    measure: Measure
    source: Path | None = None
    by: str = "kind"
    patterns: tuple[str, ...] = ()
    store: ResultStore | None = None
    work_dir: Path | None = None
    budget: str | None = None
    verify: Measure | None = None
    compare: tuple[Path, ...] = ()
    write_recipe: Path | None = None

    @property
    def files(self) -> tuple[Path, Path, Path]:
        return (self.baseline, self.quant, self.source or self.baseline)

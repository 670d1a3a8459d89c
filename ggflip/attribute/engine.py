"""`run_attribution`: measure the quant, each group's damage and recovery hybrid, and the recipe.

Each hybrid is written (by `ggflip.gguf.splice`) into a temporary folder, measured through the
spec's `Measure` (the corpus or multiple-choice engine) and deleted before the next one is
written, so the disk holds one hybrid at a time; the folder is removed when the run ends,
however it ends. Each model's figures are kept in the result store (`ggflip.attribute.store`)
as soon as they are measured, keyed by the files' identities, which tensor comes from which file
and the measurement, so a stopped run (Ctrl-C) keeps its finished groups and a re-run measures
only what is missing.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Generator, Sequence
from pathlib import Path

from ggflip.attribute.events import (
    AttributionFinished,
    AttributionPlanned,
    ModelMeasured,
    ModelStarted,
)
from ggflip.attribute.groups import group_tensors
from ggflip.attribute.measure import Figures, Measure
from ggflip.attribute.plan import GroupPlan, Hybrid, hybrids, plan_groups
from ggflip.attribute.recipe_build import build_report, recipe_hybrid
from ggflip.attribute.report import AttributionReport, VerifyRow
from ggflip.attribute.spec import AttributeSpec
from ggflip.errors import DiskFullError
from ggflip.gguf.memory import format_bytes
from ggflip.gguf.splice import Splicer, TensorRow, hybrid_bytes, same_tensors, tensor_table

_DISK_MARGIN = 64 << 20  # beyond the largest hybrid: the writer's temporary file and logs


class _Models:
    """Measures models (a file, or a hybrid written for the purpose) one at a time, counting
    them for the progress events and keeping their figures in the store."""

    def __init__(self, spec: AttributeSpec, rows: Sequence[TensorRow], total: int) -> None:
        self.spec, self.rows, self.total, self.index = spec, rows, total, 0
        self.splicer = Splicer()
        self.folder = Path(tempfile.mkdtemp(prefix="ggflip-attribute-", dir=spec.work_dir))

    def stored(self, hybrid: Hybrid, measure: Measure) -> Figures | None:
        store = self.spec.store
        return store.get(self.spec.files, hybrid.sources, measure) if store else None

    def hybrid(
        self, hybrid: Hybrid, measure: Measure, keep: Path | None = None
    ) -> Generator[object, None, Figures]:
        """Figures of `hybrid`: from the store, else written, measured and stored."""
        self.index += 1
        figures = self.stored(hybrid, measure)
        started = time.perf_counter()
        if figures is None or keep is not None:
            yield ModelStarted(self.index, self.total, hybrid.label)
            path = self.write(hybrid, keep)
            try:
                if figures is None:
                    figures = yield from measure.measure(path, hybrid.label)
                    if self.spec.store:
                        self.spec.store.put(self.spec.files, hybrid.sources, measure, figures)
            finally:
                if keep is None:
                    path.unlink(missing_ok=True)
            stored = False
        else:
            stored = True
        yield ModelMeasured(
            self.index, self.total, hybrid.label, figures, time.perf_counter() - started, stored
        )
        return figures

    def write(self, hybrid: Hybrid, keep: Path | None) -> Path:
        files = self.spec.files
        base = files[hybrid.base]
        taken = {
            row.name: files[source]
            for row, source in zip(self.rows, hybrid.sources)
            if files[source] != base
        }
        path = keep or self.folder / f"hybrid-{self.index}.gguf"
        self.splicer.write(base, taken, path)
        return path

    def file(self, path: Path, label: str, measure: Measure) -> Generator[object, None, Figures]:
        """Figures of an existing GGUF (the quant, a uniform quant), by its own file identity."""
        self.index += 1
        store, key = self.spec.store, (path,)
        figures = store.get(key, (), measure) if store else None
        started, stored = time.perf_counter(), figures is not None
        if figures is None:
            yield ModelStarted(self.index, self.total, label)
            figures = yield from measure.measure(path, label)
            if store:
                store.put(key, (), measure, figures)
        yield ModelMeasured(
            self.index, self.total, label, figures, time.perf_counter() - started, stored
        )
        return figures

    def close(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def _check_disk(
    spec: AttributeSpec, rows: Sequence[TensorRow], todo: Sequence[Hybrid]
) -> tuple[int, int, Path]:
    """The largest hybrid's bytes and the free bytes where hybrids go.

    Raises:
        DiskFullError: not enough free space for one hybrid, in one line.
    """
    where = spec.work_dir or Path(tempfile.gettempdir())
    need = max((hybrid_bytes(spec.files[h.base], rows, h.sources) for h in todo), default=0)
    free = shutil.disk_usage(where).free
    if todo and free < need + _DISK_MARGIN:
        raise DiskFullError(
            f"not enough disk for a hybrid in {where}: one needs {format_bytes(need)}, "
            f"{format_bytes(free)} free; give --work-dir on a larger disk"
        )
    return need, free, where


def run_attribution(spec: AttributeSpec) -> Generator[object, None, AttributionReport]:
    """Measure the quant, every group's damage and recovery, and (with a budget and `verify`)
    the recipe's model, yielding events (the measuring engine's among them).

    Raises:
        UsageError: files of different models, a group pattern that matches nothing, a bad
            budget; DiskFullError: no room for a hybrid; and whatever the measuring engine
            raises.
    """
    rows = tensor_table(spec.files)
    groups = group_tensors([row.name for row in rows], spec.by, spec.patterns)
    same = [same_tensors(path, spec.quant) for path in spec.files]
    plans = plan_groups(rows, groups, same)
    todo = hybrids(rows, plans)
    verifying = spec.verify is not None and spec.budget is not None
    total = 1 + len(todo) + (2 + len(spec.compare) if verifying else 0)
    need, free, where = _check_disk(spec, rows, todo)
    models = _Models(spec, rows, total)
    try:
        stored = sum(models.stored(h, spec.measure) is not None for h in todo)
        yield AttributionPlanned(
            tuple(g.name for g in groups), total, stored, need, str(where), free
        )
        quant = yield from models.file(spec.quant, "quant", spec.measure)
        figures = {}
        for hybrid in todo:
            figures[hybrid.label] = yield from models.hybrid(hybrid, spec.measure)
        report = build_report(spec, rows, plans, quant, figures)
        if report.recipe is not None and (verifying or spec.write_recipe):
            rows_verified = yield from _verify(spec, models, rows, plans, report)
            report = _with_verify(report, spec, rows_verified)
        yield AttributionFinished(report)
        return report
    finally:
        models.close()


def _verify(
    spec: AttributeSpec,
    models: _Models,
    rows: Sequence[TensorRow],
    plans: Sequence[GroupPlan],
    report: AttributionReport,
) -> Generator[object, None, tuple[VerifyRow, ...]]:
    """Write the recipe's model (kept at `write_recipe` if given) and, with `verify`, measure it
    beside the quant and the uniform quants on the held-out data."""
    assert report.recipe is not None
    hybrid = recipe_hybrid(rows, plans, report)
    keep = spec.write_recipe or models.folder / "recipe.gguf"
    if spec.verify is None:
        models.write(hybrid, keep)
        return ()
    measure = spec.verify
    verified = []
    figures = yield from models.hybrid(hybrid, measure, keep)
    where = str(keep) if spec.write_recipe else "(spliced for the check, not kept)"
    verified.append(VerifyRow("recipe", where, keep.stat().st_size, figures))
    for path, label in ((spec.quant, "quant"), *((p, p.stem) for p in spec.compare)):
        figures = yield from models.file(path, label, measure)
        verified.append(VerifyRow(label, str(path), path.stat().st_size, figures))
    return tuple(verified)


def _with_verify(
    report: AttributionReport, spec: AttributeSpec, verified: tuple[VerifyRow, ...]
) -> AttributionReport:
    from dataclasses import replace

    described = spec.verify.describe() if spec.verify is not None else {}
    return replace(report, verify=verified, verify_measure=described)

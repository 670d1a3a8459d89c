"""benchmarks/gpu.py's sizing and results document (no model): the budget is honoured without
cutting more than it must, every cut is named, ratios are the ratio of the runs' means, and a
malformed document is refused."""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(name, module)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def plan() -> ModuleType:
    return _load("gpu_plan")


def _total(plan: ModuleType, sizes: object, rates: object) -> float:
    return float(sum(plan.estimate(sizes, rates).values()))


class TestSizing:
    @pytest.mark.parametrize("decode_tps", [300.0, 2_000.0, 20_000.0])
    @pytest.mark.parametrize("budget_s", [150.0, 400.0])
    def test_fits_the_budget_and_cuts_no_more_than_it_must(
        self, plan: ModuleType, decode_tps: float, budget_s: float
    ) -> None:
        rates = plan.Rates(decode_tps)
        sizes, cuts = plan.plan_sizes(budget_s, rates, smoke=False)
        if any(cut.startswith("even the smallest") for cut in cuts):
            floor = plan.scaled(dataclasses.replace(plan.FULL, rounds=1), 0.0)
            assert sizes == floor and _total(plan, floor, rates) > budget_s
            return
        assert _total(plan, sizes, rates) <= budget_s
        if sizes == plan.FULL:
            assert cuts == []
            return
        one_round = dataclasses.replace(plan.FULL, rounds=1)
        if _total(plan, one_round, rates) <= budget_s:
            assert sizes == one_round  # two rounds did not fit, one round of everything does
            return
        # the factor it found is the largest: 2% more of every size no longer fits
        factor = sizes.mmlu0 / plan.FULL.mmlu0
        assert _total(plan, plan.scaled(one_round, factor * 1.02), rates) > budget_s
        assert all(getattr(sizes, f) >= getattr(plan.SMOKE, f) for f in plan.SCALED_FIELDS)

    def test_each_cut_names_the_size_its_full_value_and_the_new_one(self, plan: ModuleType) -> None:
        sizes, cuts = plan.plan_sizes(200.0, plan.Rates(500.0), smoke=False)
        changed = {
            f.name
            for f in dataclasses.fields(sizes)
            if getattr(sizes, f.name) != getattr(plan.FULL, f.name)
        }
        assert changed >= {"mmlu0", "rounds"}
        assert sorted(cut.split(":")[0] for cut in cuts) == sorted(changed)
        assert f"mmlu0: 800 -> {sizes.mmlu0} (to fit 200 s)" in cuts

    def test_a_budget_below_the_smallest_sizes_says_so(self, plan: ModuleType) -> None:
        sizes, cuts = plan.plan_sizes(20.0, plan.Rates(300.0), smoke=False)
        assert all(getattr(sizes, f) == getattr(plan.SMOKE, f) for f in plan.SCALED_FIELDS)
        assert any(cut.startswith("even the smallest sizes are estimated at") for cut in cuts)

    def test_a_bigger_budget_never_gives_smaller_sizes(self, plan: ModuleType) -> None:
        rates = plan.Rates(800.0)
        previous = None
        for budget_s in (60.0, 120.0, 240.0, 480.0, 960.0, 5_000.0):
            sizes, _ = plan.plan_sizes(budget_s, rates, smoke=False)
            if previous is not None:
                assert all(getattr(sizes, f) >= getattr(previous, f) for f in plan.SCALED_FIELDS)
            previous = sizes
        assert previous == plan.FULL

    def test_smoke_takes_the_smallest_sizes_whatever_the_budget(self, plan: ModuleType) -> None:
        sizes, cuts = plan.plan_sizes(10_000.0, plan.Rates(60_000.0), smoke=True)
        assert sizes == plan.SMOKE and len(cuts) == 1


def _document(plan: ModuleType, measurements: dict) -> dict:
    return {
        "schema": plan.SCHEMA,
        "started_utc": "2026-12-07T05:00:00+00:00",
        "wall_s": 312.5,
        "device": {"kind": "cpu", "name": "test"},
        "build": {},
        "versions": {},
        "settings": {},
        "sizes": dataclasses.asdict(plan.SMOKE),
        "cuts": [],
        "timings_s": {},
        "measurements": measurements,
    }


class TestDocument:
    def test_ratio_is_of_the_means_and_the_target_is_the_issues(self, plan: ModuleType) -> None:
        zero = plan.comparison("mmlu_0shot", [440.0], [500.0, 600.0], load_average=[1.0, 1.2])
        assert zero["reference_tps"] == 550.0
        assert zero["ratio"] == pytest.approx(0.8)
        assert zero["target"] == 0.9 and zero["meets_target"] is False
        corpus = plan.comparison("corpus", [90.0, 110.0], [100.0, 100.0], load_average=[])
        assert corpus["ratio"] == pytest.approx(1.0) and corpus["meets_target"] is True
        five = plan.comparison("mmlu_5shot", [2650.0], [500.0, 500.0], load_average=[])
        assert five["meets_target"] is None
        doc = _document(plan, {"mmlu_0shot": zero, "corpus": corpus, "mmlu_5shot": five})
        assert plan.check_document(doc) == []

    def test_a_cpu_run_is_judged_by_the_cpu_targets(self, plan: ModuleType) -> None:
        """The issue's CPU targets: 0-shot 0.95x pp512 (0.9x on a GPU), cloze none (0.5x)."""
        zero = plan.comparison("mmlu_0shot", [560.0], [600.0, 600.0], plan.CPU_TARGETS)
        assert zero["target"] == 0.95 and zero["meets_target"] is False  # 0.933
        assert plan.comparison("mmlu_0shot", [560.0], [600.0])["meets_target"] is True
        cloze = plan.comparison("cloze", [100.0], [600.0], plan.CPU_TARGETS)
        assert cloze["target"] is None and cloze["meets_target"] is None
        assert plan.CPU_TARGETS.keys() == plan.TARGETS.keys()

    def test_a_malformed_document_is_refused(self, plan: ModuleType) -> None:
        good = plan.comparison("cloze", [300.0], [500.0, 700.0], load_average=[0.5, 0.7])
        tampered = {**good, "ratio": 0.6}  # 300 / 600 is 0.5
        doc = _document(plan, {"cloze": tampered, "hellaswag": good})
        del doc["device"]
        problems = plan.check_document(doc)
        assert "device: expected dict" in problems
        assert "measurements.cloze.ratio: not the ratio of the runs' means" in problems
        assert "measurements.hellaswag: not a known measurement" in problems
        assert len(problems) == 3

    def test_a_skipped_measurement_needs_no_numbers(self, plan: ModuleType) -> None:
        doc = _document(plan, {"generation": {"skipped": "12 s left, estimated 40 s"}})
        assert plan.check_document(doc) == []

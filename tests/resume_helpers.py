"""Run the engine to the end, or stop it part-way as Ctrl-C would: shared by the resume tests."""

from __future__ import annotations

from ggflip.backends.fake import FakeBackendFactory
from ggflip.choice.engine import run_comparison
from ggflip.choice.events import QuestionScored, RunFinished
from ggflip.choice.report import Report
from ggflip.choice.spec import RunSpec


def run_report(spec: RunSpec, factory: FakeBackendFactory) -> tuple[list[object], Report]:
    """Every event of a whole run, and its report."""
    events = list(run_comparison(spec, factory))
    assert isinstance(events[-1], RunFinished)
    return events, events[-1].report


def stop_after(spec: RunSpec, factory: FakeBackendFactory, label: str, n: int) -> None:
    """Run until `n` questions of `label` are scored, then stop as Ctrl-C would."""
    events = run_comparison(spec, factory)
    for event in events:
        if isinstance(event, QuestionScored) and event.label == label and event.done >= n:
            events.close()
            return
    raise AssertionError("the run finished before the stop point")


def assert_same(one: Report, two: Report) -> None:
    """Two reports agree on every row and every summary a resume could get wrong."""
    assert [q.rows for q in one.quants] == [q.rows for q in two.quants]
    assert one.baseline.accuracy == two.baseline.accuracy  # type: ignore[union-attr]
    assert [q.kl_mean for q in one.quants] == [q.kl_mean for q in two.quants]
    assert [q.by_rule for q in one.quants] == [q.by_rule for q in two.quants]

"""The run store on the fake backend: resume equals an uninterrupted run, damage is detected and
rebuilt."""

from __future__ import annotations

import logging
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from ggflip.backends.fake import FakeBackendFactory
from ggflip.choice.engine import run_comparison
from ggflip.choice.events import QuestionScored, Resumed
from ggflip.choice.resume import run_progress
from ggflip.choice.row_store import STORE_NAME, RowStore
from ggflip.choice.spec import RunSpec
from ggflip.config.models_toml import ModelSet
from ggflip.errors import DiskFullError
from ggflip.runs.events import ModelLoading
from ggflip.tasks.questions import QuestionSet
from tests.resume_helpers import assert_same, run_report, stop_after


def _spec(tmp_path: Path, model_set: ModelSet, questions: QuestionSet, **kwargs: object) -> RunSpec:
    return RunSpec(
        model_set,
        questions,
        cache_dir=tmp_path,
        run_store=RowStore.in_cache(tmp_path),
        batch_size=3,
        **kwargs,
    )  # type: ignore[arg-type]


@pytest.mark.parametrize(("label", "n"), [("F16", 7), ("Q8_0", 12), ("Q2_K", 39)])
def test_stopped_run_resumes_to_the_same_report(
    tmp_path: Path,
    fake_set: ModelSet,
    fake_questions: QuestionSet,
    fake_factory: FakeBackendFactory,
    label: str,
    n: int,
) -> None:
    _, reference = run_report(RunSpec(fake_set, fake_questions, batch_size=3), fake_factory)
    spec = _spec(tmp_path, fake_set, fake_questions)
    stop_after(spec, fake_factory, label, n)
    fake_factory.opened.clear()
    events, resumed = run_report(spec, fake_factory)
    restored = {e.label: e.n_restored for e in events if isinstance(e, Resumed)}
    assert restored[label] == min(
        40, -(-n // 3) * 3
    )  # each batch of 3 is stored as soon as it is scored
    assert resumed.complete
    assert_same(reference, resumed)
    # models already finished are not even loaded again
    finished = list(fake_set.models).index(next(m for m in fake_set.models if m.label == label))
    assert not {m.label for m in fake_set.models[:finished]} & set(fake_factory.opened)


def test_rerun_of_a_finished_run_scores_nothing(
    tmp_path: Path,
    fake_set: ModelSet,
    fake_questions: QuestionSet,
    fake_factory: FakeBackendFactory,
) -> None:
    spec = _spec(tmp_path, fake_set, fake_questions)
    _, first = run_report(spec, fake_factory)
    assert run_progress(spec, fake_factory) == {m.label: 40 for m in fake_set.models}
    fake_factory.opened.clear()
    events, second = run_report(spec, fake_factory)
    assert fake_factory.opened == [] and not any(isinstance(e, ModelLoading) for e in events)
    assert (
        sum(isinstance(e, QuestionScored) for e in events) == 3 * 40
    )  # restored questions are still announced
    assert_same(first, second)
    fake_factory.opened.clear()
    run_report(RunSpec(**{**spec.__dict__, "resume": False}), fake_factory)
    assert fake_factory.opened == [
        "self",
        "Q8_0",
        "Q2_K",
    ]  # --no-resume: quants scored again (baseline cached)


def test_run_progress_is_zero_before_any_run(
    tmp_path: Path,
    fake_set: ModelSet,
    fake_questions: QuestionSet,
    fake_factory: FakeBackendFactory,
) -> None:
    spec = _spec(tmp_path, fake_set, fake_questions)
    assert run_progress(spec, fake_factory) == {"F16": 0, "self": 0, "Q8_0": 0, "Q2_K": 0}
    stop_after(spec, fake_factory, "F16", 10)
    assert run_progress(spec, fake_factory)["F16"] == 12  # whole batches of 3


@pytest.mark.parametrize("damage", ["garbage", "truncated", "other_format", "empty"])
def test_damaged_store_file_is_moved_aside_and_rebuilt(
    tmp_path: Path,
    fake_set: ModelSet,
    fake_questions: QuestionSet,
    fake_factory: FakeBackendFactory,
    caplog: pytest.LogCaptureFixture,
    damage: str,
) -> None:
    spec = _spec(tmp_path, fake_set, fake_questions)
    _, reference = run_report(spec, fake_factory)
    path = tmp_path / STORE_NAME
    with closing(sqlite3.connect(path)) as db, db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    if damage == "garbage":
        path.write_bytes(b"this is not a database" * 100)
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[: 4096 + 100])
    elif damage == "other_format":
        with closing(sqlite3.connect(path)) as db, db:
            db.execute("PRAGMA user_version=99")
    else:
        path.write_bytes(b"")
    with caplog.at_level(logging.WARNING):
        _, again = run_report(spec, fake_factory)
    assert_same(reference, again)
    if damage != "empty":  # an empty file is a valid new database
        assert "run store" in caplog.text and "damaged" in caplog.text
        assert (tmp_path / (STORE_NAME + ".damaged")).exists()


def test_damaged_rows_are_dropped_and_scored_again(
    tmp_path: Path,
    fake_set: ModelSet,
    fake_questions: QuestionSet,
    fake_factory: FakeBackendFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    spec = _spec(tmp_path, fake_set, fake_questions)
    _, reference = run_report(spec, fake_factory)
    with closing(sqlite3.connect(tmp_path / STORE_NAME)) as db, db:
        db.execute(
            "UPDATE rows SET payload = CAST(replace(CAST(payload AS TEXT), '0', '1') AS BLOB) "
            "WHERE label = 'Q8_0' AND idx < 5"
        )
        db.execute("UPDATE rows SET checksum = 'x' WHERE label = 'Q2_K' AND idx = 7")
    with caplog.at_level(logging.WARNING):
        events, again = run_report(spec, fake_factory)
    restored = {e.label: e.n_restored for e in events if isinstance(e, Resumed)}
    assert restored["Q8_0"] == 35 and restored["Q2_K"] == 39 and restored["self"] == 40
    assert "5 damaged row(s) of Q8_0" in caplog.text and "1 damaged row(s) of Q2_K" in caplog.text
    assert_same(reference, again)


def test_disk_full_in_the_store_keeps_what_was_stored(
    tmp_path: Path,
    fake_set: ModelSet,
    fake_questions: QuestionSet,
    fake_factory: FakeBackendFactory,
) -> None:
    _, reference = run_report(RunSpec(fake_set, fake_questions, batch_size=3), fake_factory)
    full = RunSpec(
        fake_set,
        fake_questions,
        cache_dir=tmp_path,
        batch_size=3,
        run_store=RowStore(tmp_path / STORE_NAME, max_pages=12),
    )
    with pytest.raises(DiskFullError, match="disk full while saving scored questions"):
        list(run_comparison(full, fake_factory))
    with closing(sqlite3.connect(tmp_path / STORE_NAME)) as db, db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        stored = db.execute("SELECT count(*) FROM rows").fetchone()[0]
    assert stored > 0
    with closing(sqlite3.connect(tmp_path / STORE_NAME)) as db, db:
        per_label = dict(db.execute("SELECT label, count(*) FROM rows GROUP BY label").fetchall())
    events, resumed = run_report(_spec(tmp_path, fake_set, fake_questions), fake_factory)
    assert {e.label: e.n_restored for e in events if isinstance(e, Resumed)} == per_label
    assert_same(reference, resumed)

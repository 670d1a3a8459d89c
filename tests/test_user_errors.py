"""Errors a user can act on: reading a file the user named (one error naming the file for every
way it can fail), the "did you mean" hint, and flag counts out of range."""

from __future__ import annotations

from pathlib import Path

import pytest

from ggflip.corpus.texts import read_corpus
from ggflip.errors import (
    ConfigError,
    DataError,
    ModelFileError,
    UsageError,
    check_counts,
    did_you_mean,
)
from ggflip.gguf.header import read_header
from ggflip.reports.pages import load_run_report
from ggflip.store.reading import read_named_file
from ggflip.tasks.registry import load_task_file


def test_bytes_and_a_prefix(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(b"GGUF and more")
    assert read_named_file(path, "model file", ModelFileError) == b"GGUF and more"
    assert read_named_file(path, "model file", ModelFileError, n_bytes=4) == b"GGUF"


@pytest.mark.parametrize(
    ("reader", "error", "what"),
    [
        (read_corpus, DataError, "text file"),
        (read_header, ModelFileError, "model file"),
        (load_run_report, DataError, "report"),
        (load_task_file, ConfigError, "task file"),
    ],
)
def test_every_reader_names_the_file(
    reader: object, error: type[Exception], what: str, tmp_path: Path
) -> None:
    """Missing, a folder, an unusable path: the caller's error class, the file and what it is."""
    assert callable(reader)
    with pytest.raises(error, match=f"^{tmp_path}/missing: {what} not found$"):
        reader(tmp_path / "missing")
    with pytest.raises(error, match=f"^{tmp_path}: is a folder, not a {what}$"):
        reader(tmp_path)
    with pytest.raises(error, match="not a usable file path"):
        reader(tmp_path / "a\0b")


def test_did_you_mean() -> None:
    tasks = ["mmlu", "mmlu_5shot", "piqa"]
    assert did_you_mean("mmlu5shot", tasks) == "; did you mean 'mmlu_5shot'?"
    assert did_you_mean("zzz", ["mmlu", "piqa"]) == ""
    hint = did_you_mean("kl_men", ["kl_mean", "kl_max", "flips"], n=3, cutoff=0.5)
    assert hint == "; did you mean 'kl_mean' or 'kl_max'?"


def test_check_counts_boundaries_and_order() -> None:
    """Positive: 1 passes, 0 fails; at least zero: 0 passes, -1 fails; None is not given."""
    check_counts({"--a": 1, "--b": None}, {"--c": 0, "--d": None})
    with pytest.raises(UsageError, match="^--b must be positive, got 0$"):
        check_counts({"--a": 1, "--b": 0}, {"--c": -1})
    with pytest.raises(UsageError, match="^--c must be 0 or more, got -1$"):
        check_counts({"--a": 2}, {"--c": -1})


def test_each_error_class_exits_with_its_code() -> None:
    """Exit codes as docs/errors.md's table gives them; a subclass without one inherits its
    parent's."""
    from ggflip import errors

    expected = {
        errors.GgflipError: 1,
        errors.UsageError: 2,
        errors.ConfigError: 3,
        errors.ModelFileError: 4,
        errors.DataError: 5,
        errors.VocabMismatchError: 6,
        errors.CacheError: 7,
        errors.ReadOnlyCacheError: 7,
        errors.DiskFullError: 8,
        errors.BackendError: 9,
        errors.RunInterrupted: 130,
    }
    assert {cls: int(cls("x").exit_code) for cls in expected} == expected


def test_a_closed_pipe_stops_quietly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`ggflip pick REPORT --json | head -1`: the reader closes the pipe; ggflip stops with the
    shell's SIGPIPE status (128 + 13) and no traceback (rich's consoles exit 1 quietly on their
    own)."""
    import os

    from ggflip.cli.main import main
    from tests.test_pick import _report, _write

    report = _write(tmp_path / "r.json", _report())
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before ggflip writes
    with os.fdopen(write_end, "w") as closed:
        monkeypatch.setattr("sys.stdout", closed)
        assert main(["pick", str(report), "--budget", "6GB", "--json"]) == 128 + 13
        monkeypatch.undo()
    assert "Traceback" not in capsys.readouterr().err

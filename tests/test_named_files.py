"""Reading a file the user named: one error, naming the file, for every way it can fail; and the
"did you mean" hint every unknown-name error ends with."""

from __future__ import annotations

from pathlib import Path

import pytest

from ggflip.corpus.texts import read_corpus
from ggflip.errors import ConfigError, DataError, ModelFileError, did_you_mean
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
